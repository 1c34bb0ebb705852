"""
Grow a PotsVAE on scikit-learn's digits with the curriculum, one pot at a time, printing
every decision of the stage manager as it is taken: which pot is split and why, whether
the split held or faded, and why the curriculum stopped.

    python examples/curriculum_digits.py --num-epochs 300
    python examples/curriculum_digits.py --set curriculum.kick_steps=300 --set prior.M=6

This is what ``pyro-pots fit`` runs (see docs/curriculum.md), driven through
``CurriculumTrainer`` so that each decision can be printed the moment it happens; the
trainer's model and guide are ``vae.model`` and ``vae.guide``, plain Pyro callables.
"""

import argparse

import pyro
import torch

from pyro_pots.config import load_config
from pyro_pots.data import load_data
from pyro_pots.metrics import clustering_scores
from pyro_pots.training.outputs import open_responsibilities
from pyro_pots.training.trainer import CurriculumTrainer


def describe(entry):
    """One line for a decision of the stage manager (an entry of ``manager.log``)."""
    where = f"epoch {entry['epoch']:4d}  stage {entry['stage']:2d}  {entry['action']:7s}"
    if entry["pot"] is not None:
        where += f" pot {entry['pot']}"
    if entry["parent"] is not None:
        where += f" (from pot {entry['parent']})"
    return f"{where}: {entry['reason']}"


def main(args):
    overrides = [
        f"data.spec={args.data}",
        f"model.num_pots={args.num_pots}",
        f"train.max_epochs={args.num_epochs}",
        f"train.seed={args.seed}",
        f"train.device={'cuda' if args.cuda else 'cpu'}",
        f"train.jit={'true' if args.jit else 'false'}",
        *args.set,
    ]
    cfg = load_config(overrides=overrides)
    torch.set_num_threads(cfg.train.threads)
    data = load_data(cfg.data.spec, cfg.model.likelihood)
    train, held = data.split(cfg.data.heldout_fraction, cfg.data.seed)
    pyro.clear_param_store()
    trainer = CurriculumTrainer.from_config(
        cfg, torch.from_numpy(train.X), torch.from_numpy(held.X)
    )
    printed = 0

    def print_new_decisions():
        nonlocal printed
        for entry in trainer.manager.log[printed:]:
            print(describe(entry))
        printed = len(trainer.manager.log)

    def on_epoch(row):
        print_new_decisions()
        if row["epoch"] % args.print_every == 0:
            print(
                f"epoch {row['epoch']:4d}  open pots {row['open']}  "
                f"held-out loss {row['heldout_loss']:.3f}  mean max resp "
                f"{row['mean_max_resp']:.3f}"
            )

    print_new_decisions()
    trainer.run(on_epoch)
    trainer.finish()  # a split not judged when the budget ran out is undone
    print_new_decisions()

    pots, resp = open_responsibilities(trainer.vae, data)
    result = {
        "n_active": len(pots),
        "active": pots,
        "epochs": trainer.epoch,
        "stop_reason": trainer.manager.stop_reason,
        "decisions": list(trainer.manager.log),
    }
    print(f"{len(pots)} pots open after {trainer.epoch} epochs: {pots}")
    if data.labels is not None:
        result["clustering"] = clustering_scores(data.labels, resp.argmax(-1))
        print(
            "against the digit labels: "
            + ", ".join(f"{k.upper()} {v:.3f}" for k, v in result["clustering"].items())
        )
    return result


if __name__ == "__main__":
    assert pyro.__version__.startswith("1.")
    parser = argparse.ArgumentParser(description="the pots curriculum on digits")
    parser.add_argument("-n", "--num-epochs", default=300, type=int, help="epoch budget")
    parser.add_argument("--num-pots", default=20, type=int, help="K_max, a cap")
    parser.add_argument(
        "--data", default="digits", help="data spec (digits, synthetic:k=5, a file)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="config override"
    )
    parser.add_argument("--print-every", default=25, type=int)
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--cuda", action="store_true", default=False)
    parser.add_argument("--jit", action="store_true", default=False)
    result = main(parser.parse_args())
