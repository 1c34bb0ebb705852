"""
How fast is a training step through Pyro, against the pure-PyTorch twin of the same loss
(``tests/twin.py``: none of Pyro's bookkeeping)? The twin runs twice: batched over the open
pots as ``PotsVAE`` is (the same FLOPs: the practical limit), and with its Python loop
over the pots (the plainest code).

    python benchmarks/speed.py                 # about 3 minutes on 2 cores
    python benchmarks/speed.py --repeats 9

A step is forward, backward and an Adam update (the trainer's fused Adam, for both). The
Pyro path is what the trainer runs:
``Trace_ELBO().differentiable_loss(vae.model, vae.guide, x, active)`` under
``logit_prior_scale``, with Pyro's validation off (the trainer validates the first epoch
only). Pyro and twin runs are interleaved, each repeat times ``--steps`` steps, and the
tables report medians over ``--repeats`` repeats. Run it on an otherwise idle machine.
Prints Markdown tables.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import pyro
import torch
from pyro.infer import Trace_ELBO

from pyro_pots import PotsVAE, handlers, pots_mask
from pyro_pots.training.trainer import adam

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from twin import twin_loss  # noqa: E402


def make(data_dim: int, num_pots: int, seed: int = 0) -> PotsVAE:
    torch.manual_seed(seed)
    return PotsVAE(data_dim, num_pots=num_pots)


def pyro_step(vae: PotsVAE, optimizer, active: torch.Tensor) -> Callable:
    elbo = Trace_ELBO()

    def step(x: torch.Tensor) -> None:
        with pyro.validation_enabled(False), handlers.logit_prior_scale(lam=1.0):
            loss = elbo.differentiable_loss(vae.model, vae.guide, x, active)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def twin_step(vae: PotsVAE, optimizer, active: torch.Tensor, batched: bool) -> Callable:
    def step(x: torch.Tensor) -> None:
        loss = twin_loss(vae, x, active, lam=1.0, batched=batched)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def timed(step: Callable, batches: List[torch.Tensor]) -> float:
    """Seconds for one pass over ``batches``."""
    start = time.perf_counter()
    for x in batches:
        step(x)
    return time.perf_counter() - start


def batches_of(x: torch.Tensor, batch_size: int, steps: int) -> List[torch.Tensor]:
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return [x[rows] for rows in order.split(batch_size)][:steps]


def pyro_vs_twin(data_dim, rows, batch_size, num_pots, open_pots, steps, repeats) -> Dict:
    x = torch.rand(rows, data_dim, generator=torch.Generator().manual_seed(1))
    batches = batches_of(x, batch_size, steps)
    active = pots_mask(num_pots, range(open_pots))
    builders = {
        "pyro": pyro_step,
        "batched": lambda vae, opt, act: twin_step(vae, opt, act, batched=True),
        "loop": lambda vae, opt, act: twin_step(vae, opt, act, batched=False),
    }
    runs = {}
    for name, build in builders.items():
        vae = make(data_dim, num_pots)
        runs[name] = build(vae, adam(vae.parameters(), 1e-3), active)
        timed(runs[name], batches[:3])  # warm-up
    seconds: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(repeats):  # interleaved, so drifts in machine speed hit all
        for name in runs:
            seconds[name].append(timed(runs[name], batches))
    return {name: len(batches) / statistics.median(s) for name, s in seconds.items()}


def epoch_seconds(data_dim, rows, batch_size, num_pots, open_pots, repeats) -> float:
    """Median seconds of a Pyro-path epoch over ``rows`` rows."""
    x = torch.rand(rows, data_dim, generator=torch.Generator().manual_seed(1))
    batches = batches_of(x, batch_size, len(x))
    vae = make(data_dim, num_pots)
    step = pyro_step(vae, adam(vae.parameters(), 1e-3), pots_mask(num_pots, range(open_pots)))
    timed(step, batches[:3])
    return statistics.median(timed(step, batches) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, {args.threads} threads")

    print(
        "\n| input | batch | K_max / open | Pyro steps/s | twin batched | twin loop "
        "| Pyro / twin batched |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for data_dim, rows, batch in ((64, 1797, 128), (784, 60000, 256)):
        r = pyro_vs_twin(data_dim, rows, batch, 16, 10, args.steps, args.repeats)
        print(
            f"| {data_dim}-d, {rows} rows | {batch} | 16 / 10 | {r['pyro']:.1f} "
            f"| {r['batched']:.1f} | {r['loop']:.1f} | {r['pyro'] / r['batched']:.2f} |",
            flush=True,
        )

    print("\n| K_max (2 open) | epoch s (digits size, batch 128) | / K_max 4 |")
    print("| --- | --- | --- |")
    base = None
    for num_pots in (4, 16, 64):
        secs = epoch_seconds(64, 1797, 128, num_pots, 2, args.repeats)
        base = base or secs
        print(f"| {num_pots} | {secs:.3f} | {secs / base:.2f} |", flush=True)

    print("\n| rows (64-d, K_max 16, 10 open, batch 128) | epoch s | ms per 1000 rows |")
    print("| --- | --- | --- |")
    for rows in (1797, 7500, 30000, 60000):
        secs = epoch_seconds(64, rows, 128, 16, 10, max(1, args.repeats // 2))
        print(f"| {rows} | {secs:.2f} | {1e6 * secs / rows:.1f} |", flush=True)


if __name__ == "__main__":
    main()
