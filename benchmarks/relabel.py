"""
What routes a split's rows back to one pot after its kick: one split, replayed under
variants from the same saved state.

    python benchmarks/relabel.py --out runs/relabel

A fit of ``synthetic:k=8,seed=2`` (``train.seed`` = ``data.seed`` = 2, the defaults
otherwise, but without the routing refinement, ``curriculum.refine_weight=0``: the
configuration that ends at 7 pots) is run to the epoch at which it opens the pot that
should take one of the two clusters its parent holds (``--at``, 328); that state is saved
under ``--out`` and reused. From it, each variant trains
``--epochs`` more epochs and prints, after each epoch, where the rows of the two clusters
are routed (the argmax of the encoder's logits over the open pots) and each cluster's mean
ELBO under the parent's and the new pot's decoders (one seeded draw, the same every epoch).

Variants: ``no refinement`` (as the fit was run); ``lambda 0 after the kick`` (the logit
prior switched off when the kick ends); ``no Potts after the kick``; ``refine W``
(``curriculum.refine_weight`` = W, from the unlock on). Labels are read only to choose and
report the two clusters.
"""

import argparse
import os
from dataclasses import replace
from pathlib import Path

import torch

from pyro_pots.config import load_config, resolve_likelihood
from pyro_pots.curriculum.refinement import RoutingRefinement
from pyro_pots.data import load_data
from pyro_pots.distributions import pots_mask
from pyro_pots.model.scoring import pot_scores
from pyro_pots.training.fitting import new_trainer

VARIANTS = [
    "no refinement",
    "lambda 0 after the kick",
    "no Potts after the kick",
    "refine 1",
    "refine 10",
]


def trainer_at(args, overrides):
    """The trainer of the fit, at the saved epoch (run there and saved the first time)."""
    cfg = load_config(None, overrides)
    data = load_data(cfg.data.spec, cfg.model.likelihood)
    cfg = resolve_likelihood(cfg, data)
    train, held = data.split(cfg.data.heldout_fraction, cfg.data.seed)
    cut = replace(cfg, train=replace(cfg.train, max_epochs=args.at))
    trainer = new_trainer(cut, torch.from_numpy(train.X), torch.from_numpy(held.X))
    saved = Path(args.out) / f"state_{args.at}.pt"
    if saved.exists():
        trainer.load_state_dict(torch.load(saved, weights_only=False))
    else:
        trainer.run()
        saved.parent.mkdir(parents=True, exist_ok=True)
        torch.save(trainer.state_dict(), saved)
    trainer.cfg = replace(cfg, train=replace(cfg.train, max_epochs=args.at + args.epochs))
    return trainer, torch.as_tensor(train.labels)


def kicked_clusters(trainer, labels):
    """The two clusters the pending split's kick sends to the parent and to the new pot."""
    pending = trainer.manager.pending
    if pending is None:
        raise SystemExit(f"no split is pending at epoch {trainer.epoch}: choose another --at")
    targets = trainer.kick.targets
    sides = {}
    for pot in (pending["parent"], pending["pot"]):
        sides[pot] = int(torch.mode(labels[targets == pot]).values)
    return pending["parent"], pending["pot"], sides


def replay(args, overrides, variant):
    trainer, labels = trainer_at(args, overrides)
    parent, new, sides = kicked_clusters(trainer, labels)
    if variant.startswith("refine"):
        trainer.refinement = RoutingRefinement(float(variant.split()[1]), trainer.cfg.train.seed)
    two = pots_mask(trainer.vae.num_pots, [parent, new])
    kick_end = None

    def on_epoch(row):
        nonlocal kick_end
        if not row["kicking"] and kick_end is None:
            kick_end = row["epoch"]
            if variant == "lambda 0 after the kick":
                prior = replace(trainer.cfg.prior, lam_max=0.0)
                trainer.cfg = replace(trainer.cfg, prior=prior)
            elif variant == "no Potts after the kick":
                trainer.neighbour_prior = None
        with torch.no_grad():
            y = trainer.vae.mean_logits(trainer.train_x).masked_fill(~trainer.vae.active, -1e9)
            pots = y.argmax(-1)
        cells = []
        for cluster in sides.values():
            rows = labels == cluster
            noise = torch.Generator().manual_seed(5)
            scores = pot_scores(trainer.vae, trainer.train_x[rows], two, generator=noise)
            elbo = dict(zip(scores.pots.tolist(), scores.elbo.mean(0).tolist()))
            cells.append(
                f"cluster {cluster}: {int((pots[rows] == parent).sum()):3d} in {parent}, "
                f"{int((pots[rows] == new).sum()):3d} in {new}; "
                f"ELBO {elbo[parent]:.2f} / {elbo[new]:.2f}"
            )
        mark = "kick" if row["kicking"] else "    "
        print(f"  {row['epoch']:4d} {mark} {row['action']:8s} " + " | ".join(cells), flush=True)

    print(f"== {variant}: pot {new} split from {parent}; clusters {sides}", flush=True)
    trainer.run(on_epoch)
    for decision in trainer.manager.log:
        if decision.get("epoch", 0) > args.at:
            print(f"  -> {decision['action']}: {decision.get('reason', '')}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/relabel")
    parser.add_argument("--at", type=int, default=328)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=VARIANTS)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    overrides = [
        "data.spec=synthetic:k=8,seed=2",
        "train.seed=2",
        "data.seed=2",
        "train.threads=1",
        "curriculum.refine_weight=0",
        *args.set,
    ]
    for variant in args.variants:
        replay(args, overrides, variant)


if __name__ == "__main__":
    main()
