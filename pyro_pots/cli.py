"""
The ``pyro-pots`` command line.

``pyro-pots fit`` trains a :class:`~pyro_pots.model.PotsVAE` with plain SVI on a fixed
number of open pots and writes a run directory (summary, history, model, plots). The
curriculum that opens pots by itself builds on this loop.

Bad input (data spec or file, argument values, an existing run directory) ends in one
line on stderr and exit code 2.
"""

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from pyro.infer import Predictive
from tqdm import tqdm

from pyro_pots import PotsVAE, pots_mask
from pyro_pots.data import Dataset, load_data
from pyro_pots.errors import PotsInputError
from pyro_pots.metrics import clustering_scores
from pyro_pots.model.likelihoods import LIKELIHOODS
from pyro_pots.plots import plot_pot_means, plot_responsibilities, plot_training
from pyro_pots.training import fit_svi


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyro-pots", description=__doc__.split("\n\n")[1])
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", help="fit a PotsVAE by SVI and write a run directory")
    fit.add_argument("--data", default="digits", help="digits | synthetic[:k=5,...] | a file")
    fit.add_argument("--out", default="runs/fit", help="run directory (must not exist)")
    fit.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    fit.add_argument("--num-pots", type=_positive_int, default=10, help="K_max")
    fit.add_argument("--open-pots", type=_positive_int, default=3, help="pots open during the fit")
    fit.add_argument("--latent-dim", type=_positive_int, default=4)
    fit.add_argument("--likelihood", choices=LIKELIHOODS, default="bernoulli")
    fit.add_argument("--num-epochs", type=_positive_int, default=150)
    fit.add_argument("--warmup-epochs", type=int, default=20, help="epochs to anneal lambda 0 -> 1")
    fit.add_argument("--batch-size", type=_positive_int, default=128)
    fit.add_argument("--lr", type=_positive_float, default=1e-3)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--threads", type=_positive_int, default=2, help="torch CPU threads")
    return parser


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise PotsInputError(
            f"run directory '{out}' exists and is not empty; "
            "pass --overwrite or choose another --out"
        )
    (out / "plots").mkdir(parents=True, exist_ok=True)


def fit_command(args: argparse.Namespace) -> dict:
    """Run ``pyro-pots fit`` and return the summary it writes."""
    if args.open_pots > args.num_pots:
        raise PotsInputError(f"--open-pots ({args.open_pots}) exceeds --num-pots ({args.num_pots})")
    torch.set_num_threads(args.threads)
    data = load_data(args.data, likelihood=args.likelihood)
    out = Path(args.out)
    _prepare_out(out, args.overwrite)

    torch.manual_seed(args.seed)
    X = torch.from_numpy(data.X)
    vae = PotsVAE(
        data.n_features,
        num_pots=args.num_pots,
        latent_dim=args.latent_dim,
        likelihood=args.likelihood,
    )
    active = pots_mask(args.num_pots, range(args.open_pots))
    start = time.perf_counter()
    with tqdm(total=args.num_epochs, desc=f"fit {data.name}", unit="epoch") as bar:

        def progress(record):
            bar.set_postfix(
                loss=f"{record.loss:.2f}",
                lam=f"{record.lam:.2f}",
                max_resp=f"{record.mean_max_resp:.3f}",
            )
            bar.update()

        history = fit_svi(
            vae,
            X,
            active,
            num_epochs=args.num_epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup_epochs=args.warmup_epochs,
            seed=args.seed,
            on_epoch=progress,
        )
    summary = _summarize(vae, data, X, active, history, time.perf_counter() - start)
    _write_run(out, vae, data, X, active, history, summary)
    return summary


def _summarize(vae: PotsVAE, data: Dataset, X, active, history, seconds: float) -> dict:
    resp = vae.responsibilities(X, active).numpy()
    pots = active.nonzero().squeeze(-1).tolist()
    assign = resp.argmax(-1)
    usage = {int(k): float((assign == k).mean()) for k in pots}
    entropy = -(resp * np.log(np.clip(resp, 1e-30, 1))).sum(-1)
    summary = {
        "data": data.name,
        "n_rows": data.n_rows,
        "n_active": len(pots),
        "active": pots,
        "usage": usage,
        "k_eff": sum(u >= 0.01 for u in usage.values()),
        "peakiness": {
            "mean_max_resp": float(resp.max(-1).mean()),
            "mean_entropy": float(entropy.mean()),
        },
        "final_loss": history[-1].loss,
        "time_s": round(seconds, 2),
    }
    if data.labels is not None:
        summary["clustering"] = clustering_scores(data.labels, assign)
    return summary


def _write_run(out: Path, vae, data: Dataset, X, active, history, summary: dict) -> None:
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(out / "history.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "loss", "lambda", "mean_max_resp", "usage"])
        for r in history:
            writer.writerow(
                [
                    r.epoch,
                    f"{r.loss:.6f}",
                    r.lam,
                    f"{r.mean_max_resp:.6f}",
                    " ".join(f"{u:.4f}" for u in r.usage),
                ]
            )
    torch.save(
        {"state_dict": vae.state_dict(), "history": [asdict(r) for r in history]}, out / "model.pt"
    )
    plot_training(history, out / "plots" / "training.png")
    plot_responsibilities(
        vae.responsibilities(X, active).numpy(), out / "plots" / "responsibilities.png"
    )
    if data.image_shape is not None:
        pots = active.nonzero().squeeze(-1).tolist()
        means = np.stack([_pot_means(vae, k, n=8) for k in pots])
        plot_pot_means(means, data.image_shape, pots, out / "plots" / "pot_means.png")


@torch.no_grad()
def _pot_means(vae: PotsVAE, pot: int, n: int) -> np.ndarray:
    """Decoded means of ``n`` prior draws of one pot (a prior-predictive draw for that pot)."""
    draw = Predictive(vae.model, num_samples=1, return_sites=["_RETURN"])
    out = draw(None, pots_mask(vae.num_pots, pot), num_rows=n)["_RETURN"][0]
    return vae.likelihood(out).mean.numpy()


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = fit_command(args)
    except PotsInputError as error:
        print(f"pyro-pots: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    print(f"run written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
