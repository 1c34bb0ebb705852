"""Run directories, fuzzed (issue 16): outputs the OS refuses and checkpoints that do not
fit their run, drawn by hypothesis.

Every case must end in exit code 0, or in exit code 2 with exactly one line on stderr: no
traceback, no terminal escapes, and no half-written output file left behind. Bounded in
time: deterministic (``derandomize=True``), few examples, one tiny run fitted once and
copied for each example.
"""

from __future__ import annotations

import errno
import shutil
import warnings

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_cli_and_examples import TINY
from test_fuzz import fresh_dir

from pyro_pots.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

QUICK = [*TINY, "--set", "train.max_epochs=3", "--set", "output.plots=false"]


def fuzz_settings(max_examples: int):
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def run_cli(argv, capsys):
    """``main(argv)`` as the shell sees it: (exit code, stderr), the exit contract checked."""
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = main(argv)
        except SystemExit as stop:  # argparse: bad arguments
            code = stop.code
    err = capsys.readouterr().err
    assert code in (0, 2), f"exit code {code} for {argv!r}: {err[-2000:]}"
    event(f"exit {code}")
    if code == 2:
        assert len(err.splitlines()) == 1 and err.endswith("\n"), f"not one line: {err!r}"
        assert err.startswith("pyro-pots: error: ") and "\x1b" not in err, err
    return code, err


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    out = tmp_path_factory.mktemp("fitted") / "run"
    assert main(["fit", "--out", str(out), *QUICK]) == 0
    return out


# -- outputs the OS refuses ---------------------------------------------------------------------
_ERRORS = [errno.EACCES, errno.EROFS, errno.ENOSPC, errno.EIO, errno.EISDIR, errno.ENAMETOOLONG]


@st.composite
def unwritable_outputs(draw):
    """A command writing an output file, and an output path or a write the OS refuses."""
    command = draw(st.sampled_from(["evaluate", "label", "sample"]))
    kind = draw(
        st.sampled_from(
            ["directory", "dev-full", "no-parent", "through-a-file", "too-long", "nul", "refused"]
        )
    )
    code = draw(st.sampled_from(_ERRORS))
    overwrite = draw(st.booleans())
    return command, kind, code, overwrite


@fuzz_settings(24)
@given(case=unwritable_outputs())
def test_an_output_the_os_refuses_is_one_line(fitted, capsys, monkeypatch, case):
    command, kind, code, overwrite = case
    event(f"{command} {kind}")
    folder = fresh_dir()
    (folder / "file.txt").write_text("a file\n")
    (folder / "out.csv").mkdir()
    (folder / "out.npz").mkdir()
    target = {
        "directory": str(folder / "out.csv"),
        "dev-full": "/dev/full",
        "no-parent": str(folder / "missing" / "out.csv"),
        "through-a-file": str(folder / "file.txt" / "out.csv"),
        "too-long": str(folder / ("x" * 300 + ".csv")),
        "nul": str(folder / "a\x00b.csv"),
        "refused": str(folder / "out.csv"),
    }[kind]
    if command == "sample":
        target = target.replace(".csv", ".npz")
    labels = folder / "labels.csv"
    labels.write_text("row,label\n0,1\n1,0\n")
    argv = [command, "--run", str(fitted)]
    if command == "label":
        argv += ["--labels", str(labels)]
    if command == "sample":
        argv += ["--out", target, "-n", "3"]
    else:
        argv += ["--output", target] + (["--overwrite"] if overwrite else [])
    with monkeypatch.context() as patch:
        if kind == "refused":  # the file system refuses the write itself
            import numpy as np

            from pyro_pots import labels as labels_module
            from pyro_pots import uncertainty

            def refuse(*args, **kwargs):
                raise OSError(code, "refused by the OS")

            patch.setattr(uncertainty, "write_scores_csv", refuse)
            patch.setattr(labels_module, "write_predictions_csv", refuse)
            patch.setattr(np, "savez", refuse)
        status, err = run_cli(argv, capsys)
    if kind in ("directory", "no-parent", "through-a-file", "too-long", "refused", "nul"):
        assert status == 2, err
    if kind == "dev-full" and (overwrite or command == "sample"):
        assert status == 2, err
    left = sorted(p.name for p in folder.iterdir())
    assert left == ["file.txt", "labels.csv", "out.csv", "out.npz"]  # nothing half-written
    assert (folder / "file.txt").read_text() == "a file\n"


# -- checkpoints that do not fit their run ------------------------------------------------------
def _leaves(value, path=()):
    """Every (path, value) in a nested checkpoint (dicts and lists walked)."""
    yield path, value
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _leaves(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value[:3]):
            yield from _leaves(inner, (*path, index))


def _replace(state, path, new):
    holder = state
    for key in path[:-1]:
        holder = holder[key]
    if new is _DROP:
        del holder[path[-1]]
    else:
        holder[path[-1]] = new


_DROP = object()
_ODD = st.one_of(
    st.just(_DROP),
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.integers(10**12, 10**13),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.builds(lambda shape: torch.zeros(shape), st.lists(st.integers(0, 4), max_size=3)),
    st.builds(lambda n: torch.full((n,), 7, dtype=torch.long), st.integers(0, 300)),
)


@fuzz_settings(40)
@given(data=st.data())
def test_an_inconsistent_checkpoint_is_one_line_on_evaluate_and_resume(fitted, capsys, data):
    run = fresh_dir() / "run"
    shutil.copytree(fitted, run)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    paths = [path for path, _ in _leaves(state) if path]
    path = data.draw(st.sampled_from(paths), label="path")
    new = data.draw(_ODD, label="value")
    event(f"{'.'.join(map(str, path[:2]))}")
    _replace(state, path, new)
    torch.save(state, run / "checkpoint.pt")
    run_cli(["evaluate", "--run", str(run)], capsys)
    argv = ["fit", "--out", str(run), "--resume", "--quiet", "--set", "train.max_epochs=4"]
    run_cli(argv, capsys)
