"""
Write your own guide for the PotsVAE model and train it with plain ``pyro.infer.SVI``.

The library's guide reads each row with an MLP. This one reads the 8x8 digit as an image,
with a small convolutional network, and is written against the model's public site names
(``pyro_pots.sites``): like every guide of this model it samples ``logits``, ``route`` and
``z`` inside the ``data`` and ``channels`` plates, under the same two handlers as the model
(closed pots masked out, each pot's latent term weighted by the responsibilities), so that
model and guide terms line up site by site.

    python examples/custom_guide.py --num-epochs 60 --open-pots 3

Before training, one ``Trace_ELBO`` evaluation under Pyro's validation checks that the
guide samples every latent site the model has (Pyro warns "Found vars in model but not
guide" otherwise; here that stops the example). After training, a posterior predictive
check (``pyro_pots.ppc``) runs with this guide. With a fixed set of open pots from the start
the data collapse into one pot (NMI near 0, as in the README); opening pots one at a time is
the curriculum's job. This example is about the guide.
"""

import argparse
import warnings

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, JitTrace_ELBO, Trace_ELBO
from pyro.optim import Adam
from sklearn.datasets import load_digits
from torch import nn
from torch.nn.functional import softplus

from pyro_pots import PotRouting, PotsVAE, handlers, pots_mask, ppc
from pyro_pots.metrics import clustering_scores
from pyro_pots.sites import CHANNELS_PLATE, DATA_PLATE, LOGITS, ROUTE, Z


class ConvEncoder(nn.Module):
    """8x8 image -> logits over the K pots and (loc, scale) of each pot's latent."""

    def __init__(self, num_pots, latent_dim, channels=16):
        super().__init__()
        self.num_pots, self.latent_dim = num_pots, latent_dim
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.Softplus(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1),  # 8x8 -> 4x4
            nn.Softplus(),
            nn.Flatten(),
        )
        width = channels * 4 * 4
        self.logits = nn.Linear(width, num_pots)
        self.latent = nn.Linear(width, num_pots * 2 * latent_dim)

    def forward(self, x):
        h = self.features(x.reshape(-1, 1, 8, 8))
        # (N, K * 2d) -> (K, N, 2d): the pot axis is the channels plate, outside the rows
        # x.shape[0], not len(x): under JitTrace_ELBO only the former follows the batch size
        params = self.latent(h).reshape(x.shape[0], self.num_pots, 2 * self.latent_dim)
        loc, raw_scale = params.transpose(0, 1).chunk(2, dim=-1)
        return self.logits(h), loc, softplus(raw_scale) + 1e-4


class ConvGuide:
    """q(logits, route, z | x) of a :class:`PotsVAE`, from :class:`ConvEncoder`."""

    def __init__(self, vae, channels=16):
        self.vae = vae
        self.encoder = ConvEncoder(vae.num_pots, vae.latent_dim, channels)

    def __call__(self, x, active, num_rows=None):
        # num_rows: the model's third argument; SVI and Predictive pass a guide the
        # model's arguments
        pyro.module("conv_encoder", self.encoder)
        logits, loc, scale = self.encoder(x)
        with handlers.active_pots(active=active), handlers.responsibility_scale(active=active):
            with pyro.plate(DATA_PLATE, x.shape[0], dim=-1):
                y = pyro.sample(LOGITS, dist.Delta(logits, event_dim=1))
                pyro.sample(ROUTE, PotRouting(y, self.vae.temperature, self.vae.routing))
                with pyro.plate(CHANNELS_PLATE, self.vae.num_pots, dim=-2):
                    pyro.sample(Z, dist.Normal(loc, scale).to_event(1))

    @torch.no_grad()
    def responsibilities(self, x, active):
        logits = self.encoder(x)[0].masked_fill(~active, -float("inf"))
        return logits.softmax(-1)


def site_mismatches(model, guide, *args):
    """Pyro's own model/guide check (run by ``Trace_ELBO`` under validation): the warnings
    it gives, e.g. a latent site of the model that the guide does not sample."""
    with pyro.validation_enabled(True), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trace_ELBO().loss(model, guide, *args)
    return [str(w.message) for w in caught if "vars in" in str(w.message)]


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
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32, device=device)

    vae = PotsVAE(x.shape[1], num_pots=args.num_pots, latent_dim=args.latent_dim).to(device)
    guide = ConvGuide(vae, args.channels)
    guide.encoder.to(device)
    active = pots_mask(args.num_pots, range(args.open_pots), device=device)
    model = vae.model

    problems = site_mismatches(model, guide, x[:16], active)
    if problems:
        raise RuntimeError(f"the guide does not match the model: {problems}")
    print(f"the guide samples every latent site of the model: {LOGITS}, {ROUTE}, {Z}")

    elbo = JitTrace_ELBO() if args.jit else Trace_ELBO()
    svi = SVI(at_lam(model), at_lam(guide), Adam({"lr": args.learning_rate}), elbo)
    for epoch in range(args.num_epochs):
        lam = min(1.0, epoch / max(1, args.warmup_epochs))  # anneal the logit prior from 0
        total = 0.0
        lam_t = torch.tensor(lam, device=device)
        for batch in torch.randperm(len(x), device=device).split(args.batch_size):
            total += svi.step(x[batch], active, lam_t)
        if epoch % args.print_every == 0 or epoch == args.num_epochs - 1:
            resp = guide.responsibilities(x, active)
            print(
                f"epoch {epoch:4d}  loss/row {total / len(x):8.3f}  lambda {lam:.2f}  "
                f"mean max resp {resp.max(-1).values.mean():.3f}"
            )

    resp = guide.responsibilities(x, active)
    pots = resp.argmax(-1).cpu().numpy()
    scores = clustering_scores(digits.target, pots)
    print(f"NMI {scores['nmi']:.3f}  ARI {scores['ari']:.3f} with {args.open_pots} open pots")
    check = ppc.check(vae, x, active, num_samples=args.ppc_samples, seed=args.seed, guide=guide)
    for name, numbers in check.summary().items():
        print(f"ppc {name}: {numbers['flagged']}/{numbers['size']} flagged at 0.05")
    return {"loss": total / len(x), "clustering": scores, "ppc": check.summary(), "guide": guide}


if __name__ == "__main__":
    assert pyro.__version__.startswith("1.")
    parser = argparse.ArgumentParser(description="a convolutional guide for PotsVAE")
    parser.add_argument("-n", "--num-epochs", default=60, type=int)
    parser.add_argument("--num-pots", default=10, type=int)
    parser.add_argument("--open-pots", default=3, type=int)
    parser.add_argument("--latent-dim", default=4, type=int)
    parser.add_argument("--channels", default=16, type=int)
    parser.add_argument("--warmup-epochs", default=20, type=int)
    parser.add_argument("--batch-size", default=128, type=int)
    parser.add_argument("-lr", "--learning-rate", default=1e-3, type=float)
    parser.add_argument("--ppc-samples", default=20, type=int)
    parser.add_argument("--print-every", default=10, type=int)
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--cuda", action="store_true", default=False)
    parser.add_argument("--jit", action="store_true", default=False)
    result = main(parser.parse_args())
