"""A run killed mid-stage (SIGKILL) or stopped by Ctrl-C (SIGINT) resumes with ``--resume``
to exactly the run it would have been: the same decisions, history and open pots."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli_and_examples import TINY

ROOT = Path(__file__).resolve().parents[1]
#: TINY on more rows, so that a run lasts seconds and can be interrupted mid-run.
ARGS = [*TINY, "--data", "synthetic:k=2,d=8,n=6000,seed=3", "--set", "train.max_epochs=24"]
ARGS += ["--set", "output.plots=false"]


def _fit(out, *extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "pyro_pots", "fit", "--out", str(out), *ARGS, *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _interrupt_after_first_checkpoint(out, sig):
    """Start a fit, send ``sig`` as soon as its first checkpoint (the first decision) is
    written; the finished process and its stderr."""
    proc = _fit(out)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").exists():
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc, err.decode()


def _resume(out):
    proc = _fit(out, "--resume")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()


def _outcome(out):
    return (
        json.loads((out / "stages.json").read_text()),
        (out / "history.csv").read_text(),
        json.loads((out / "summary.json").read_text())["active"],
    )


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    proc = _fit(out)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    stages = json.loads((out / "stages.json").read_text())
    assert len(stages) >= 2  # the run crosses more than the first decision
    return _outcome(out)


def test_sigkill_mid_run_then_resume_equals_the_uninterrupted_run(tmp_path, straight):
    out = tmp_path / "run"
    proc, _ = _interrupt_after_first_checkpoint(out, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()  # not left looking like a finished run
    _resume(out)
    assert _outcome(out) == straight


def test_sigint_saves_exits_130_in_one_line_and_resumes_exactly(tmp_path, straight):
    out = tmp_path / "run"
    proc, err = _interrupt_after_first_checkpoint(out, signal.SIGINT)
    assert proc.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted after epoch" in lines[0] and "--resume" in lines[0]
    assert not (out / "summary.json").exists()
    _resume(out)
    assert _outcome(out) == straight
