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
import torch
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


# -- in-process: the signal is sent from inside the fit, at a chosen point, so that the
# -- outcome does not depend on timing
QUICK = [*TINY, "--set", "output.plots=false"]


def _main_fit(out, *extra):
    from pyro_pots.cli import main

    return main(["fit", "--out", str(out), *QUICK, *extra])


def _signal_during_epoch(monkeypatch, epoch, signals):
    """Send ``signals`` to this process in the middle of epoch ``epoch`` (1-based), one
    Python statement apart (each is handled before the next is sent)."""
    from pyro_pots.training.trainer import CurriculumTrainer

    original = CurriculumTrainer.train_epoch

    def train_epoch(self):
        if self.epoch + 1 == epoch:
            for sig in signals:
                os.kill(os.getpid(), sig)
        return original(self)

    monkeypatch.setattr(CurriculumTrainer, "train_epoch", train_epoch)


def _lines(capsys):
    return capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("jit", ["false", "true"])
def test_sigterm_is_treated_like_sigint(tmp_path, monkeypatch, capsys, jit):
    """With ``train.jit`` too: the resumed fit compiles its ELBO again, and compiling draws
    no noise that the uninterrupted fit did not draw (``ScheduledElbo`` puts it back)."""
    epochs = ["--set", "train.max_epochs=8", "--set", f"train.jit={jit}"]
    straight = tmp_path / "straight"
    assert _main_fit(straight, *epochs) == 0
    capsys.readouterr()
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        _signal_during_epoch(patch, 3, [signal.SIGTERM])
        assert _main_fit(out, *epochs) == 128 + signal.SIGTERM
    lines = _lines(capsys)
    assert len(lines) == 1 and "interrupted after epoch 3 (SIGTERM)" in lines[0], lines
    assert not (out / "summary.json").exists()
    assert _main_fit(out, "--resume", *epochs) == 0
    assert (out / "history.csv").read_text() == (straight / "history.csv").read_text()


def test_a_second_signal_stops_at_once_in_one_line_and_keeps_the_last_checkpoint(
    tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    assert _main_fit(out, "--set", "train.max_epochs=3") == 0  # a checkpoint of epoch 3
    capsys.readouterr()
    with monkeypatch.context() as patch:
        _signal_during_epoch(patch, 5, [signal.SIGINT, signal.SIGINT])
        argv = ["--resume", "--set", "train.max_epochs=8"]
        assert _main_fit(out, *argv) == 130  # it was a 76-line traceback
    lines = _lines(capsys)
    assert len(lines) == 1, lines
    assert "again during epoch 5" in lines[0] and "epoch 3" in lines[0] and "--resume" in lines[0]
    assert not (out / "summary.json").exists()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["trainer"]["epoch"] == 3  # the last checkpoint, untouched
    assert _main_fit(out, "--resume", "--set", "train.max_epochs=8") == 0
    straight = tmp_path / "straight"
    assert _main_fit(straight, "--set", "train.max_epochs=8") == 0
    assert (out / "history.csv").read_text() == (straight / "history.csv").read_text()


def test_a_second_signal_before_any_checkpoint_keeps_nothing(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        _signal_during_epoch(patch, 1, [signal.SIGINT, signal.SIGINT])
        assert _main_fit(out, "--set", "train.max_epochs=4") == 130
    lines = _lines(capsys)
    assert len(lines) == 1 and "before the first checkpoint; nothing was kept" in lines[0]
    assert not out.exists()


def test_signals_while_the_plots_are_written(tmp_path, monkeypatch, capsys):
    from pyro_pots import plots

    original = plots.write_run_plots

    def signalled(signals):
        def write_run_plots(*args, **kwargs):
            for sig in signals:
                os.kill(os.getpid(), sig)
            return original(*args, **kwargs)

        return write_run_plots

    argv = ["--set", "train.max_epochs=3", "--set", "output.plots=true"]
    with monkeypatch.context() as patch:  # one signal: the run is written to its end
        patch.setattr(plots, "write_run_plots", signalled([signal.SIGINT]))
        assert _main_fit(tmp_path / "once", *argv) == 0
    assert (tmp_path / "once" / "summary.json").exists()
    capsys.readouterr()
    with monkeypatch.context() as patch:  # two: stop, no traceback, the checkpoint stays
        patch.setattr(plots, "write_run_plots", signalled([signal.SIGINT, signal.SIGINT]))
        assert _main_fit(tmp_path / "twice", *argv) == 130
    lines = _lines(capsys)
    assert len(lines) == 1 and "is kept" in lines[0], lines
    assert not (tmp_path / "twice" / "summary.json").exists()
    assert (tmp_path / "twice" / "checkpoint.pt").exists()
