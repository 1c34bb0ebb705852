"""
How well do the pots classify from a few labels? Accuracy of the pot -> class map
(:func:`pyro_pots.labels.label_data`, majority vote per pot) as a function of the number of
labelled rows per class, against k-nearest-neighbour classifiers on the raw features given
the same labelled rows.

    python benchmarks/labels.py --run runs/fit          # reuse a fitted digits run
    python benchmarks/labels.py --out runs/labels_fit   # fit digits with the defaults first

Labelled rows are drawn (per class, ``--draws`` times) from the run's training rows; the
accuracy is measured on its held-out rows (the split the fit made, never trained on).
Prints a Markdown table (medians over the draws) and writes it to ``--table`` if given.
"""

import argparse
import statistics
from pathlib import Path
from typing import Dict, List

import numpy as np
from sklearn.neighbors import KNeighborsClassifier

from pyro_pots import fit, load_run
from pyro_pots.config import load_config
from pyro_pots.data import load_data
from pyro_pots.labels import UNKNOWN, label_data

PER_CLASS = (1, 5, 10, None)  # None: every training row labelled


def draw_labels(y: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """``per_class`` labelled rows of each class (the rest :data:`UNKNOWN`)."""
    labels = np.full(len(y), UNKNOWN)
    for k in np.unique(y):
        rows = rng.choice(np.flatnonzero(y == k), size=per_class, replace=False)
        labels[rows] = k
    return labels


def knn_accuracy(x, labels, test_x, test_y, k: int) -> float:
    known = labels != UNKNOWN
    if known.sum() < k:
        return float("nan")
    model = KNeighborsClassifier(n_neighbors=k).fit(x[known], labels[known])
    return float(model.score(test_x, test_y))


def one_setting(vae, train, held, per_class, draws: int, seed: int) -> Dict[str, List[float]]:
    rng = np.random.default_rng(seed)
    result: Dict[str, List[float]] = {"pots": [], "1-NN": [], "5-NN": [], "ties": [], "unl": []}
    for _ in range(1 if per_class is None else draws):
        labels = train.labels if per_class is None else draw_labels(train.labels, per_class, rng)
        out = label_data(vae, train.X, labels, held.X)
        result["pots"].append(float((out.predicted == held.labels).mean()))
        result["ties"].append(len(out.label_map.ties))
        result["unl"].append(len(out.label_map.unlabelled))
        result["1-NN"].append(knn_accuracy(train.X, labels, held.X, held.labels, 1))
        # 5 neighbours from fewer than 5 rows per class would vote across classes
        few = per_class is not None and per_class < 5
        knn5 = float("nan") if few else knn_accuracy(train.X, labels, held.X, held.labels, 5)
        result["5-NN"].append(knn5)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a fitted run directory (default: fit digits first)")
    parser.add_argument("--out", default="runs/labels_fit", help="where to fit when no --run")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", help="also write the Markdown table here")
    args = parser.parse_args()
    run = Path(args.run or args.out)
    if args.run is None:
        cfg = load_config(None, [f"output.dir={run}"])
        vae = fit(cfg, progress=False).vae
    else:
        fitted = load_run(run)
        cfg, vae = fitted.config, fitted.model
    data = load_data(cfg.data.spec, cfg.model.likelihood)
    train, held = data.split(cfg.data.heldout_fraction, cfg.data.seed)
    n_open = int(vae.active.sum())
    lines = [
        f"Run `{run}`: {cfg.data.spec}, {n_open} open pots; labelled rows drawn from the "
        f"{train.n_rows} training rows, accuracy on the {held.n_rows} held-out rows; "
        f"median over {args.draws} draws (one for 'all').",
        "",
        "| labels per class | pots (majority vote) | 1-NN raw | 5-NN raw "
        "| pots with a tie | pots with no label |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for per_class in PER_CLASS:
        r = one_setting(vae, train, held, per_class, args.draws, args.seed)
        med = {key: statistics.median(values) for key, values in r.items()}
        knn5 = "-" if np.isnan(med["5-NN"]) else f"{med['5-NN']:.3f}"
        name = "all" if per_class is None else str(per_class)
        lines.append(
            f"| {name} | {med['pots']:.3f} | {med['1-NN']:.3f} | {knn5} "
            f"| {med['ties']:g} | {med['unl']:g} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.table:
        Path(args.table).write_text(table + "\n")


if __name__ == "__main__":
    main()
