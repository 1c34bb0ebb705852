"""
Fit a PotsVAE to scikit-learn's digits with plain ``pyro.infer.SVI`` and a fixed set of
open pots, printing the loss and how peaky the responsibilities get.

    python examples/svi_digits.py --num-epochs 150 --open-pots 3

This is the model and guide used by hand, the way Pyro's examples/vae/vae.py does it; the
curriculum that opens pots by itself is built on the same pieces.
"""

import argparse

import pyro
import torch
from pyro.infer import SVI, JitTrace_ELBO, Trace_ELBO
from pyro.optim import Adam
from sklearn.datasets import load_digits

from pyro_pots import PotsVAE, handlers, pots_mask


def at_lam(fn):
    """``fn(x, active)`` under the logit prior's weight lambda, taken as a last argument.

    Under ``JitTrace_ELBO`` only tensors among the arguments are inputs of the compiled
    ELBO; a handler entered around ``svi.step`` would be traced once, its lambda frozen.
    """

    def fn_at_lam(x, active, lam):
        with handlers.logit_prior_scale(lam=lam):
            return fn(x, active)

    return fn_at_lam


def main(args):
    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    device = torch.device("cuda" if args.cuda else "cpu")
    x = torch.tensor(load_digits().data / 16.0, dtype=torch.float32, device=device)

    vae = PotsVAE(x.shape[1], num_pots=args.num_pots, latent_dim=args.latent_dim).to(device)
    active = pots_mask(args.num_pots, range(args.open_pots), device=device)
    model, guide = at_lam(vae.model), at_lam(vae.guide)  # lambda: an argument of both
    elbo = JitTrace_ELBO() if args.jit else Trace_ELBO()
    svi = SVI(model, guide, Adam({"lr": args.learning_rate}), elbo)

    for epoch in range(args.num_epochs):
        lam = min(1.0, epoch / max(1, args.warmup_epochs))  # anneal the logit prior from 0
        total = 0.0
        perm = torch.randperm(len(x), device=device)
        lam_t = torch.tensor(lam, device=device)
        for batch in perm.split(args.batch_size):
            total += svi.step(x[batch], active, lam_t)
        if epoch % args.print_every == 0 or epoch == args.num_epochs - 1:
            resp = vae.responsibilities(x, active)
            usage = resp.argmax(-1).bincount(minlength=args.num_pots)[active] / len(x)
            print(
                f"epoch {epoch:4d}  loss/row {total / len(x):8.3f}  lambda {lam:.2f}  "
                f"mean max resp {resp.max(-1).values.mean():.3f}  "
                f"usage {[round(u, 2) for u in usage.tolist()]}"
            )
    return vae


if __name__ == "__main__":
    assert pyro.__version__.startswith("1.")
    parser = argparse.ArgumentParser(description="PotsVAE on digits with plain SVI")
    parser.add_argument("-n", "--num-epochs", default=150, type=int)
    parser.add_argument("--num-pots", default=10, type=int)
    parser.add_argument("--open-pots", default=3, type=int)
    parser.add_argument("--latent-dim", default=4, type=int)
    parser.add_argument("--warmup-epochs", default=20, type=int)
    parser.add_argument("--batch-size", default=128, type=int)
    parser.add_argument("-lr", "--learning-rate", default=1e-3, type=float)
    parser.add_argument("--print-every", default=10, type=int)
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--cuda", action="store_true", default=False)
    parser.add_argument("--jit", action="store_true", default=False)
    vae = main(parser.parse_args())
