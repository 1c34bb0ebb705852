import csv
import json

import numpy as np
import pytest
import torch

from pyro_pots.cli import main
from pyro_pots.config import load_config

#: a tiny curriculum: a few epochs per stage, small networks, 3 pots at most.
TINY = [
    "--data",
    "synthetic:k=2,d=8,n=240,seed=3",
    "--quiet",
    *("--set", "model.num_pots=3"),
    *("--set", "model.hidden_dim=16"),
    *("--set", "model.decoder_hidden_dim=16"),
    *("--set", "curriculum.min_stage_epochs=2"),
    *("--set", "curriculum.patience=1"),
    *("--set", "curriculum.rel_tol=0.5"),
    *("--set", "curriculum.kick_steps=4"),
    *("--set", "prior.lam_warmup_epochs=2"),
    *("--set", "train.threads=1"),
]


def fit(out, *extra):
    return main(["fit", "--out", str(out), *TINY, *extra])


def test_fit_writes_a_complete_run_directory(tmp_path):
    out = tmp_path / "run"
    assert fit(out, "--set", "train.max_epochs=14") == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ("n_active", "active", "usage", "peakiness", "k_eff", "final_loss"):
        assert key in summary
    for key in ("heldout_loss", "time_s", "stages", "clustering"):
        assert key in summary
    assert summary["n_active"] == len(summary["active"]) == len(summary["usage"])
    assert sum(summary["usage"].values()) == pytest.approx(1.0)
    assert set(summary["clustering"]) == {"acc", "nmi", "ari"}
    peak = summary["peakiness"]
    assert set(peak) == {"mean_max_resp", "mean_entropy", "mean_max_posterior"}
    assert 1 / summary["n_active"] <= peak["mean_max_posterior"] <= 1
    history = list(csv.DictReader(open(out / "history.csv")))
    assert len(history) == summary["epochs"] <= 14
    assert {"train_loss", "heldout_loss", "lam", "temperature", "usage_0"} <= set(history[0])
    log = json.loads((out / "stages.json").read_text())
    assert log and log[0]["action"] == "unlock" and all("reason" in e for e in log)
    rows = list(csv.DictReader(open(out / "assignments.csv")))
    assert len(rows) == 240 and set(rows[0]) == {"row", "pot", "max_resp", "label"}
    assert {int(r["pot"]) for r in rows} <= set(summary["active"])
    assert load_config(out / "config.yaml").data.spec == "synthetic:k=2,d=8,n=240,seed=3"
    for name in ("checkpoint.pt", "plots/losses.png", "plots/usage.png"):
        assert (out / name).stat().st_size > 0


def test_resume_continues_exactly_where_the_run_stopped(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert fit(straight, "--set", "train.max_epochs=12") == 0
    assert fit(split, "--set", "train.max_epochs=7") == 0
    assert (
        main(["fit", "--out", str(split), "--resume", "--quiet", "--set", "train.max_epochs=12"])
        == 0
    )
    a = list(csv.DictReader(open(straight / "history.csv")))
    b = list(csv.DictReader(open(split / "history.csv")))
    assert len(a) == len(b) and a == b
    sa = json.loads((straight / "stages.json").read_text())
    sb = json.loads((split / "stages.json").read_text())
    assert sa == sb


def test_evaluate_and_sample_read_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert fit(out, "--set", "train.max_epochs=6") == 0
    capsys.readouterr()
    assert main(["evaluate", "--run", str(out)]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["n_rows"] == 240 and "clustering" in scores
    assert main(["sample", "--run", str(out), "-n", "5"]) == 0
    drawn = np.load(out / "samples.npz")
    assert drawn["X"].shape == (5, 8) and np.isfinite(drawn["X"]).all()
    assert main(["sample", "--run", str(out), "-n", "5"]) == 2  # never replaces a file
    assert "exists" in capsys.readouterr().err
    # found by tests/test_fuzz.py: a traceback (FileNotFoundError) instead of one line
    assert main(["sample", "--run", str(out), "--out", str(tmp_path / "no" / "x.npz")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "cannot be written" in err[0]
    # without .npz, np.savez adds it: the file that is never replaced is samples.npz
    assert main(["sample", "--run", str(out), "--out", str(out / "samples")]) == 2
    assert "samples.npz' exists" in capsys.readouterr().err


def test_fit_refuses_to_overwrite_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    assert main(["fit", "--out", str(out), "--set", "train.max_epochs=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0] and "--overwrite" in err[0]
    assert (out / "summary.json").read_text() == "{}"


def test_overwrite_never_removes_a_directory_that_is_not_a_run(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert main(["fit", "--out", str(out), "--overwrite"]) == 2
    assert "not a pyro-pots run" in capsys.readouterr().err
    assert (out / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["fit", "--data", "no_such_file.npz"], "no_such_file.npz"),
        (["fit", "--set", "model.num_pots=0"], "model.num_pots"),
        (["fit", "--set", "routing.mode=fast"], "routing.mode"),
        (["fit", "--set", "prior.sigma=0"], "prior.sigma"),
        (["fit", "--config", "missing.yaml"], "missing.yaml"),
        (["fit", "--resume"], "checkpoint"),
        (["evaluate", "--run", "no_such_run"], "no_such_run"),
        (["sample", "--run", "no_such_run"], "no_such_run"),
        # found by tests/test_fuzz.py: tracebacks (OSError: file name too long, ...)
        (["fit", "--data", "d" * 300], "cannot be read"),
        (["fit", "--data", "synthetic:n=50", "--out", "o" * 300], "run directory 'ooo"),
        (["evaluate", "--run", "r" * 300], "run directory 'rrr"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, monkeypatch, capsys, argv, needle):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not (tmp_path / "runs").exists() or argv[1] == "--resume"


def test_corrupt_checkpoint_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert fit(out, "--set", "train.max_epochs=3") == 0
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert main(["evaluate", "--run", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint.pt" in err[0]


class _RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (print, ("this checkpoint ran code",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert fit(out, "--set", "train.max_epochs=3") == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["payload"] = _RunsCodeWhenUnpickled()
    torch.save(state, out / "checkpoint.pt")
    capsys.readouterr()
    assert main(["evaluate", "--run", str(out)]) == 2
    captured = capsys.readouterr()
    assert "this checkpoint ran code" not in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "checkpoint.pt" in err[0]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["sample", "--run", "x", "-n", "0"], "-n"),
        (["fit", "--bogus"], "--bogus"),  # found by tests/test_fuzz.py: usage + error lines
        (["sample", "--run", "x", "--seed", "-1"], "--seed"),  # found by tests/test_fuzz.py:
        (["ppc", "--run", "x", "--seed", str(2**70)], "--seed"),  # a traceback from numpy
        (["evaluate", "--run", "x", "a\nb"], "a\\nb"),
    ],
)
def test_bad_argument_value_exits_2(capsys, argv, needle):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_a_cuda_device_that_is_not_there_is_one_line(tmp_path, capsys):
    # found by tests/test_fuzz.py: "Torch not compiled with CUDA enabled", a traceback
    argv = ["fit", *TINY, "--out", str(tmp_path / "run"), "--set", "train.device=cuda:99"]
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "train.device" in err[0]
    assert not (tmp_path / "run" / "summary.json").exists()


def test_a_jit_compiled_fit_runs_and_matches_the_run_directory_layout(tmp_path):
    out = tmp_path / "jit"
    assert fit(out, "--set", "train.max_epochs=6", "--set", "train.jit=true") == 0
    history = list(csv.DictReader(open(out / "history.csv")))
    assert len(history) == 6 and all(np.isfinite(float(r["train_loss"])) for r in history)


def test_a_run_that_fails_while_writing_outputs_has_no_summary(tmp_path, monkeypatch, capsys):
    from pyro_pots import plots

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(plots, "write_run_plots", broken)
        assert fit(tmp_path / "run", "--set", "train.max_epochs=3") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0]
    assert (tmp_path / "run" / "checkpoint.pt").exists()  # the training is kept: resumable
    assert not (tmp_path / "run" / "summary.json").exists()
    argv = ["fit", "--out", str(tmp_path / "run"), "--resume", "--quiet"]
    assert main([*argv, "--set", "train.max_epochs=3"]) == 0
    assert (tmp_path / "run" / "summary.json").exists()


def test_data_the_model_cannot_score_in_float32_is_one_line(tmp_path, capsys):
    huge = tmp_path / "huge.npz"
    rng = np.random.default_rng(0)
    np.savez(huge, X=(1e19 + rng.random((60, 8))).astype(np.float32))
    out = tmp_path / "run"
    argv = ["fit", *TINY, "--data", str(huge), "--out", str(out)]
    sets = ["model.likelihood=normal", "data.scaling=none", "train.max_epochs=3"]
    assert main([*argv, *(a for s in sets for a in ("--set", s))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "held-out loss is inf" in err[0] and "data.scaling" in err[0]
    assert not (out / "summary.json").exists()
