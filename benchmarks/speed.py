"""
How fast is a training step through Pyro, against the pure-PyTorch twin of the same loss
(``tests/twin.py``: none of Pyro's bookkeeping)? The twin runs twice: batched over the open
pots as ``PotsVAE`` is (the same FLOPs: the practical limit), and with its Python loop
over the pots (the plainest code).

    python benchmarks/speed.py                 # about 4 minutes on 2 cores
    python benchmarks/speed.py --repeats 9 --out runs/speed9
    python benchmarks/speed.py --device cuda --out runs/speed_cuda   # where a GPU is
    python benchmarks/speed.py --only jit-fit --fit-epochs 100 --fit-repeats 3   # JIT on/off
    python benchmarks/speed.py --only pinned busy rss --out runs/speed_fits   # issue 17's rows
    python benchmarks/speed.py --only pinned busy rss --quick --out runs/speed_quick  # check

A step is forward, backward and an Adam update (the trainer's fused Adam, for both). The
Pyro path is what the trainer runs:
``Trace_ELBO().differentiable_loss(vae.model, vae.guide, x, active)`` under
``logit_prior_scale``, with Pyro's validation off (the trainer validates the first epoch
only); "Pyro JIT" is what ``train.jit`` runs, the one compiled ELBO of a fit
(:class:`~pyro_pots.training.parts.ScheduledElbo`: lambda and the kick's values are its
tensor arguments). Pyro and twin runs are interleaved, each repeat times ``--steps`` steps,
and the tables report medians over ``--repeats`` repeats; a second, interleaved pass times
each phase of a step (forward, backward, Adam) on its own. Run it on an otherwise idle
machine. On a GPU (``--device cuda``) each clock reading waits for
``torch.cuda.synchronize``, so it counts the queued kernels too. The last table times
whole short curriculum fits (``pyro_pots.fit`` on ``--fit-data`` for ``--fit-epochs``
epochs, no plots) with ``train.jit`` off and on, interleaved, medians over
``--fit-repeats``: the warm-up's lambdas and the kicks run through one compiled ELBO, so
the compile is paid once per fit and counted in the JIT fit's time.

Four more tables, only on request (``--only pinned busy rss torchrun``; issue 17), run whole fits
through the CLI, each in a fresh process (``benchmarks/speed_fits.py``), on
``train.device=--device``: ``pinned``, a digits fit with today's defaults against the same
fit at main's commit 0c7f2d4 (checked out into a temporary git worktree), the same
``train.threads`` for both, alternating, medians over ``--pinned-repeats``: wall seconds,
today / pinned, and each run's pots and ARI; ``busy``, today's digits fit idle and beside one
CPU-bound spinning process, alternating, for each of ``--busy-threads``: seconds and busy /
idle; ``rss``, the peak RSS of a fit on synthetic 60 000 x 784 rows with 20 pots open from
the start for ``--rss-epochs`` epochs, against issue 17's 1.5 GB; ``torchrun``, today's
digits fit as one process and as ``--torchrun-ranks`` gloo ranks under ``torchrun
--standalone`` (``train.threads`` each), alternating: seconds and torchrun / one.
``--quick`` shrinks them
to a check that they run (a few epochs, 6000 rows; its numbers mean nothing). Prints
Markdown tables and writes them to ``--out``/speed.md, with the numbers in speed.json.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pyro
import torch
from pyro.infer import Trace_ELBO

from pyro_pots import PotsVAE, handlers, pots_mask
from pyro_pots.config import load_config
from pyro_pots.training.fitting import fit
from pyro_pots.training.parts import ScheduledElbo, adam

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from twin import twin_loss  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_fits import (  # noqa: E402
    PINNED_COMMIT,
    RSS_LIMIT_BYTES,
    busy_fits,
    pinned_fits,
    rss_fit,
    torchrun_fits,
)


def make(data_dim: int, num_pots: int, device: torch.device, seed: int = 0) -> PotsVAE:
    torch.manual_seed(seed)
    return PotsVAE(data_dim, num_pots=num_pots).to(device)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work: CUDA runs asynchronously to the host clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pyro_loss(vae: PotsVAE, active: torch.Tensor, jit: bool = False) -> Callable:
    """The trainer's loss: Pyro's ELBO on the model and guide, under the lambda handler
    (``train.jit``: the trainer's one compiled ELBO, lambda its tensor argument)."""
    model, guide = vae.model, vae.guide  # held once: JIT caches on the callables' identity
    if jit:
        dtype = next(vae.parameters()).dtype
        device = next(vae.parameters()).device
        compiled = ScheduledElbo(model, guide, vae.temperature).at(1.0, None, dtype, device)

        def jit_loss(x: torch.Tensor) -> torch.Tensor:
            with pyro.validation_enabled(False):
                return compiled.differentiable_loss(model, guide, x, active)

        return jit_loss
    elbo = Trace_ELBO()

    def loss(x: torch.Tensor) -> torch.Tensor:
        with pyro.validation_enabled(False), handlers.logit_prior_scale(lam=1.0):
            return elbo.differentiable_loss(model, guide, x, active)

    return loss


def twin(vae: PotsVAE, active: torch.Tensor, batched: bool) -> Callable:
    """The pure-PyTorch twin of the same loss (batched over pots or looped)."""
    return lambda x: twin_loss(vae, x, active, lam=1.0, batched=batched)


def step_of(loss: Callable, optimizer) -> Callable:
    """One training step: forward, backward, optimizer update."""

    def step(x: torch.Tensor) -> None:
        value = loss(x)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()

    return step


def phases_of(loss: Callable, optimizer, seconds: Dict[str, float]) -> Callable:
    """A step that adds the seconds of its forward, backward and update to ``seconds``."""

    def step(x: torch.Tensor) -> None:
        device = x.device
        t0 = time.perf_counter()
        value = loss(x)
        sync(device)
        t1 = time.perf_counter()
        optimizer.zero_grad()
        value.backward()
        sync(device)
        t2 = time.perf_counter()
        optimizer.step()
        sync(device)
        t3 = time.perf_counter()
        for phase, dt in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2)):
            seconds[phase] = seconds.get(phase, 0.0) + dt

    return step


PHASES = ("forward", "backward", "adam")
LOSSES = {
    "pyro": pyro_loss,
    "pyro jit": lambda vae, active: pyro_loss(vae, active, jit=True),
    "batched": lambda vae, active: twin(vae, active, batched=True),
    "loop": lambda vae, active: twin(vae, active, batched=False),
}


def timed(step: Callable, batches: List[torch.Tensor]) -> float:
    """Seconds for one pass over ``batches`` (all queued device work done)."""
    device = batches[0].device
    sync(device)
    start = time.perf_counter()
    for x in batches:
        step(x)
    sync(device)
    return time.perf_counter() - start


def batches_of(x: torch.Tensor, batch_size: int, steps: int) -> List[torch.Tensor]:
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return [x[rows] for rows in order.split(batch_size)][:steps]


def pyro_vs_twin(data_dim, rows, batch_size, num_pots, open_pots, steps, repeats, device) -> Dict:
    """Steps/s of each loss (median over interleaved repeats) and, per phase of a step,
    the median milliseconds."""
    x = torch.rand(rows, data_dim, generator=torch.Generator().manual_seed(1)).to(device)
    batches = batches_of(x, batch_size, steps)
    active = pots_mask(num_pots, range(open_pots), device)
    runs, phase_runs = {}, {}
    phase_seconds: Dict[str, Dict[str, float]] = {name: {} for name in LOSSES}
    for name, build in LOSSES.items():
        vae = make(data_dim, num_pots, device)
        optimizer = adam(vae.parameters(), 1e-3)
        loss = build(vae, active)  # one loss for both: a JIT ELBO compiles once
        runs[name] = step_of(loss, optimizer)
        phase_runs[name] = phases_of(loss, optimizer, phase_seconds[name])
        timed(runs[name], batches[:3])  # warm-up (and the JIT's compilation)
    seconds: Dict[str, List[float]] = {name: [] for name in runs}
    phase_ms: Dict[str, Dict[str, List[float]]] = {
        name: {phase: [] for phase in PHASES} for name in runs
    }
    for _ in range(repeats):  # interleaved, so drifts in machine speed hit all
        for name in runs:
            seconds[name].append(timed(runs[name], batches))
            phase_seconds[name].clear()
            timed(phase_runs[name], batches)
            for phase in PHASES:
                phase_ms[name][phase].append(1e3 * phase_seconds[name][phase] / len(batches))
    return {
        "steps_per_s": {name: len(batches) / statistics.median(s) for name, s in seconds.items()},
        "phase_ms": {
            name: {phase: statistics.median(v) for phase, v in by_phase.items()}
            for name, by_phase in phase_ms.items()
        },
    }


def epoch_step(data_dim, rows, batch_size, num_pots, open_pots, device, jit: bool = False):
    """A Pyro-path epoch over ``rows`` rows, warmed up, as ``(step, batches)`` for
    :func:`timed` (``jit``: the compiled ELBO that ``train.jit``, the default, runs)."""
    x = torch.rand(rows, data_dim, generator=torch.Generator().manual_seed(1)).to(device)
    batches = batches_of(x, batch_size, len(x))
    vae = make(data_dim, num_pots, device)
    active = pots_mask(num_pots, range(open_pots), device)
    step = step_of(pyro_loss(vae, active, jit), adam(vae.parameters(), 1e-3))
    timed(step, batches[:3])
    return step, batches


def epoch_seconds(data_dim, rows, batch_size, num_pots, open_pots, repeats, device) -> float:
    """Median seconds of a Pyro-path epoch over ``rows`` rows."""
    step, batches = epoch_step(data_dim, rows, batch_size, num_pots, open_pots, device)
    return statistics.median(timed(step, batches) for _ in range(repeats))


def k_max_seconds(k_maxes, repeats, device) -> Dict[str, Dict[int, float]]:
    """Median epoch seconds at 2 open pots for each K_max, eager (``pyro``) and compiled
    (``jit``), digits-sized; every configuration is timed once per repeat, in turn, so that
    a drift of the machine's speed hits them all (this machine's speed drifts by a third
    between minutes)."""
    steps = {
        (path, k): epoch_step(64, 1797, 128, k, 2, device, jit=path == "jit")
        for path in ("pyro", "jit")
        for k in k_maxes
    }
    seconds: Dict[Tuple[str, int], List[float]] = {key: [] for key in steps}
    for _ in range(repeats):
        for key, (step, batches) in steps.items():
            seconds[key].append(timed(step, batches))
    return {
        path: {k: statistics.median(seconds[(path, k)]) for k in k_maxes}
        for path in ("pyro", "jit")
    }


def jit_fits(data: str, epochs: int, repeats: int, threads: int, device: str) -> Dict:
    """Wall seconds of a short curriculum fit (``pyro_pots.fit`` with the defaults on
    ``data`` for ``epochs`` epochs, no plots, into a temporary folder) with ``train.jit``
    off and on, interleaved (in turn first), after one untimed epoch of each (the process's
    first-call costs); the medians, SVI steps per second of wall time, and what each fit
    ended with (the two draw different noise, so their decisions may differ). Each fit
    compiles its own ELBO: the compile is in the JIT fit's time."""
    runs: Dict[str, List[Dict]] = {"off": [], "on": []}

    def one(mode: str, max_epochs: int, folder: str):
        cfg = load_config(
            None,
            [
                f"data.spec={data}",
                f"train.max_epochs={max_epochs}",
                f"train.jit={'true' if mode == 'on' else 'false'}",
                f"train.threads={threads}",
                f"train.device={device}",
                "output.plots=false",
                "output.overwrite=true",
                f"output.dir={Path(folder) / mode}",
            ],
        )
        return cfg, fit(cfg, progress=False)

    with tempfile.TemporaryDirectory() as folder:
        for mode in runs:
            one(mode, 1, folder)  # warm-up, untimed
        for repeat in range(repeats):
            for mode in list(runs)[:: 1 if repeat % 2 == 0 else -1]:
                start = time.perf_counter()
                cfg, result = one(mode, epochs, folder)
                seconds = time.perf_counter() - start
                trainer = result.trainer
                batches = -(-len(trainer.train_x) // cfg.train.batch_size)  # ceil
                compiled = trainer._jit.compiled if trainer._jit is not None else 0
                runs[mode].append(
                    {
                        "seconds": seconds,
                        "steps": trainer.epoch * batches,
                        "epochs": trainer.epoch,
                        "n_active": result.summary["n_active"],
                        "compiled": compiled,
                    }
                )
    summary = {}
    for mode, fits in runs.items():
        median = statistics.median(f["seconds"] for f in fits)
        summary[mode] = {
            "seconds": median,
            "steps_per_s": statistics.median(f["steps"] / f["seconds"] for f in fits),
            "n_active": [f["n_active"] for f in fits],
            "compiled": max(f["compiled"] for f in fits),
            "fits": fits,
        }
    return summary


#: the tables a plain run prints; the whole-fit tables of issue 17 run only when named
DEFAULT_SECTIONS = ("twin", "k-max", "rows", "jit-fit")
SECTIONS = (*DEFAULT_SECTIONS, "pinned", "busy", "rss", "torchrun")
#: --quick: epochs of each whole fit, and the rows of the RSS fit
QUICK_EPOCHS, QUICK_RSS_ROWS = 3, 6000


def describe(sets: List[str], threads) -> str:
    """A whole-fit table's settings for its header: the --set items beyond the defaults and
    the thread count (both sides of a row get the same)."""
    told = ", ".join(f"`{item}`" for item in sets)
    if threads is None:
        return told
    return f"{told}, train.threads={threads} and OMP_NUM_THREADS={threads}"


def outcomes(fits: List[Dict]) -> str:
    """Each fit's pots and ARI, in run order."""
    return "; ".join(
        f"{f['n_active']}, {'-' if f['ari'] is None else format(f['ari'], '.3f')}" for f in fits
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--out", default="runs/speed", help="folder for speed.md and speed.json")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=list(DEFAULT_SECTIONS),
        help=f"tables to run (default: {' '.join(DEFAULT_SECTIONS)})",
    )
    parser.add_argument("--fit-data", default="digits", help="data of the JIT on/off fits")
    parser.add_argument("--fit-epochs", type=int, default=100, help="epochs of each fit")
    parser.add_argument("--fit-repeats", type=int, default=3, help="fits per JIT setting")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"pinned, busy, rss: fits of {QUICK_EPOCHS} epochs (rss: 1 epoch on "
        f"{QUICK_RSS_ROWS} rows), to check that they run; jit-fit: --fit-epochs {QUICK_EPOCHS}",
    )
    parser.add_argument("--pinned-commit", default=PINNED_COMMIT, help="the older commit")
    parser.add_argument("--pinned-repeats", type=int, default=1, help="fits of each side")
    parser.add_argument(
        "--pinned-threads",
        type=int,
        default=load_config(None, []).train.threads,
        help="train.threads of both sides (default: today's default)",
    )
    parser.add_argument("--busy-threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--torchrun-ranks", type=int, default=2, help="ranks of the torchrun fit")
    parser.add_argument(
        "--torchrun-repeats", type=int, default=1, help="one-process and torchrun fits each"
    )
    parser.add_argument("--busy-repeats", type=int, default=1, help="idle and busy fits each")
    parser.add_argument("--rss-rows", type=int, help="rows of the RSS fit (default 60000)")
    parser.add_argument("--rss-pots", type=int, default=20, help="pots, all open from the start")
    parser.add_argument("--rss-epochs", type=int, help="epochs of the RSS fit (default 3)")
    parser.add_argument(
        "--rss-threads", type=int, help="train.threads of the RSS fit (default: today's default)"
    )
    args = parser.parse_args()
    if args.quick:
        args.fit_epochs = min(args.fit_epochs, QUICK_EPOCHS)
    fit_sets = [f"train.device={args.device}"]  # the whole fits: defaults, on --device
    if args.quick:
        fit_sets.append(f"train.max_epochs={QUICK_EPOCHS}")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA device here")
    results: Dict = {
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "threads": args.threads,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "steps": args.steps,
        "repeats": args.repeats,
        "date": time.strftime("%Y-%m-%d"),
    }
    lines = [
        f"torch {torch.__version__}, pyro {pyro.__version__}, {args.threads} threads, "
        f"device {results['device']}"
    ]

    def emit(*new: str) -> None:
        print("\n".join(new), flush=True)
        lines.extend(new)

    if "twin" in args.only:
        emit(
            "",
            "| input | batch | K_max / open | Pyro steps/s | Pyro JIT | twin batched | twin loop "
            "| Pyro / twin batched | Pyro JIT / twin batched |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        )
        phase_lines = [
            "",
            "| input | loss | forward ms | backward ms | Adam ms |",
            "| --- | --- | --- | --- | --- |",
        ]
        results["pyro_vs_twin"] = {}
        for data_dim, rows, batch in ((64, 1797, 128), (784, 60000, 256)):
            r = pyro_vs_twin(data_dim, rows, batch, 16, 10, args.steps, args.repeats, device)
            results["pyro_vs_twin"][f"{data_dim}-d"] = r
            sps = r["steps_per_s"]
            emit(
                f"| {data_dim}-d, {rows} rows | {batch} | 16 / 10 | {sps['pyro']:.1f} "
                f"| {sps['pyro jit']:.1f} | {sps['batched']:.1f} | {sps['loop']:.1f} "
                f"| {sps['pyro'] / sps['batched']:.2f} | {sps['pyro jit'] / sps['batched']:.2f} |"
            )
            for name in ("pyro", "pyro jit", "batched"):
                ms = r["phase_ms"][name]
                phase_lines.append(
                    f"| {data_dim}-d | {name} | {ms['forward']:.2f} | {ms['backward']:.2f} "
                    f"| {ms['adam']:.2f} |"
                )
        emit(*phase_lines)

    if "k-max" in args.only:
        emit(
            "",
            "| K_max (2 open) | epoch s (digits size, batch 128) | / K_max 4 "
            "| compiled ELBO epoch s | / K_max 4 |",
            "| --- | --- | --- | --- | --- |",
        )
        k_maxes = (4, 16, 64)
        medians = k_max_seconds(k_maxes, args.repeats, device)
        results["k_max"], results["k_max_jit"] = medians["pyro"], medians["jit"]
        for k in k_maxes:
            secs, jit = medians["pyro"][k], medians["jit"][k]
            emit(
                f"| {k} | {secs:.3f} | {secs / medians['pyro'][4]:.2f} | {jit:.3f} "
                f"| {jit / medians['jit'][4]:.2f} |"
            )

    if "rows" in args.only:
        emit(
            "",
            "| rows (64-d, K_max 16, 10 open, batch 128) | epoch s | ms per 1000 rows |",
            "| --- | --- | --- |",
        )
        results["rows"] = {}
        for rows in (1797, 7500, 30000, 60000):
            secs = epoch_seconds(64, rows, 128, 16, 10, max(1, args.repeats // 2), device)
            results["rows"][rows] = secs
            emit(f"| {rows} | {secs:.2f} | {1e6 * secs / rows:.1f} |")

    if "jit-fit" in args.only:
        emit(
            "",
            f"| fit ({args.fit_data}, {args.fit_epochs} epochs, {args.threads} threads) "
            "| s, JIT off | s, JIT on | on / off | SVI steps/s off | on "
            "| graphs compiled (on) | open pots at the end (off; on) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        )
        r = jit_fits(args.fit_data, args.fit_epochs, args.fit_repeats, args.threads, args.device)
        results["jit_fit"] = {
            "data": args.fit_data,
            "epochs": args.fit_epochs,
            "repeats": args.fit_repeats,
            **r,
        }
        off, on = r["off"], r["on"]
        emit(
            f"| median of {args.fit_repeats} | {off['seconds']:.1f} | {on['seconds']:.1f} "
            f"| {on['seconds'] / off['seconds']:.2f} | {off['steps_per_s']:.1f} "
            f"| {on['steps_per_s']:.1f} | {on['compiled']} "
            f"| {off['n_active']}; {on['n_active']} |"
        )

    if "pinned" in args.only:
        r = pinned_fits(
            "digits", args.pinned_threads, args.pinned_repeats, fit_sets, args.pinned_commit
        )
        results["pinned"] = {"quick": args.quick, "repeats": args.pinned_repeats, **r}
        today, pinned = r["today"], r["pinned"]
        emit(
            "",
            f"| digits fit, defaults ({describe(fit_sets, args.pinned_threads)}; "
            f"median of {args.pinned_repeats}) | s, today | s, at {r['commit']} "
            "| today / pinned | pots, ARI today | pots, ARI pinned |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| wall s of `python -m pyro_pots fit` | {today['seconds']:.1f} "
            f"| {pinned['seconds']:.1f} | {r['ratio']:.2f} | {outcomes(today['fits'])} "
            f"| {outcomes(pinned['fits'])} |",
        )

    if "busy" in args.only:
        r = busy_fits("digits", args.busy_threads, args.busy_repeats, fit_sets)
        results["busy"] = {"quick": args.quick, "repeats": args.busy_repeats, "threads": r}
        emit(
            "",
            f"| digits fit, defaults ({describe(fit_sets, None)}; median of "
            f"{args.busy_repeats}), train.threads = OMP_NUM_THREADS | s, idle "
            "| s, beside 1 spinning process "
            "| busy / idle | pots, ARI idle | pots, ARI busy |",
            "| --- | --- | --- | --- | --- | --- |",
        )
        for count, row in r.items():
            emit(
                f"| {count} | {row['idle']['seconds']:.1f} | {row['busy']['seconds']:.1f} "
                f"| {row['ratio']:.2f} | {outcomes(row['idle']['fits'])} "
                f"| {outcomes(row['busy']['fits'])} |"
            )

    if "torchrun" in args.only:
        threads = load_config(None, []).train.threads
        r = torchrun_fits("digits", args.torchrun_ranks, threads, args.torchrun_repeats, fit_sets)
        results["torchrun"] = {"quick": args.quick, "repeats": args.torchrun_repeats, **r}
        one, ranks = r["one"], r["torchrun"]
        emit(
            "",
            f"| digits fit, defaults ({describe(fit_sets, threads)} per process; median of "
            f"{args.torchrun_repeats}) | s, one process | s, torchrun "
            f"--nproc_per_node={args.torchrun_ranks} | torchrun / one "
            "| pots, ARI one | pots, ARI torchrun |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| wall s | {one['seconds']:.1f} | {ranks['seconds']:.1f} | {r['ratio']:.2f} "
            f"| {outcomes(one['fits'])} | {outcomes(ranks['fits'])} |",
        )

    if "rss" in args.only:
        rows = args.rss_rows or (QUICK_RSS_ROWS if args.quick else 60000)
        epochs = args.rss_epochs or (1 if args.quick else 3)
        threads = args.rss_threads or load_config(None, []).train.threads
        data = f"synthetic:k=10,d=784,n={rows}"
        sets = [
            f"train.device={args.device}",
            f"model.num_pots={args.rss_pots}",
            f"curriculum.start_pots={args.rss_pots}",
            f"train.max_epochs={epochs}",
        ]
        r = rss_fit(data, threads, sets)
        results["rss"] = {"data": data, "sets": sets, "threads": threads, **r}
        limit_mb = RSS_LIMIT_BYTES / 1e6
        emit(
            "",
            f"| fit ({data}, {args.rss_pots} pots open from the start, {epochs} epochs, "
            f"{describe(sets[:1], threads)}) | peak RSS MB (10^6 bytes) "
            f"| <= {limit_mb:.0f} MB "
            "| pots at the end | wall s |",
            "| --- | --- | --- | --- | --- |",
            f"| `ru_maxrss` of the fit's process | {r['max_rss_bytes'] / 1e6:.0f} "
            f"| {'yes' if r['within_limit'] else '**no**'} | {r['n_active']} "
            f"| {r['seconds']:.1f} |",
        )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.md").write_text("\n".join(lines) + "\n")
    (out / "speed.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
