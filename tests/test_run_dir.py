"""Run directories users can trust (issue 16): ``--overwrite`` removes only a run's own
files, a new fit replaces the old run only when it ends well, a second writer is refused
at once, a run never reloads other data or an edited config, and a fit that never trained
does not report success."""

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cli_and_examples import TINY

from pyro_pots import run_dir
from pyro_pots.cli import main
from pyro_pots.config import load_config
from pyro_pots.storage import RunLock

ROOT = Path(__file__).resolve().parents[1]
QUICK = [*TINY, "--set", "train.max_epochs=3", "--set", "output.plots=false"]


def fit(out, *extra):
    return main(["fit", "--out", str(out), *QUICK, *extra])


def tree(folder):
    """Every file under ``folder`` with its SHA-256 (the lock file aside: a reader's pid)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".pyro-pots.lock"
    }


def one_line(capsys, needle):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    return err[0]


@pytest.fixture
def old_run(tmp_path):
    out = tmp_path / "run"
    assert fit(out) == 0
    return out


# -- 1. --overwrite removes only what pyro-pots wrote -------------------------------------
def test_overwrite_refuses_a_folder_with_a_config_yaml_and_the_users_files(tmp_path, capsys):
    # the example: it exited 0, and thesis.tex and src/ were gone
    folder = tmp_path / "p"
    (folder / "src").mkdir(parents=True)
    (folder / "config.yaml").write_text("x\n")
    (folder / "thesis.tex").write_text("keep\n")
    (folder / "src" / "main.py").write_text("print()\n")
    before = tree(folder)
    assert fit(folder, "--overwrite") == 2
    one_line(capsys, "thesis.tex")
    assert tree(folder) == before and sorted(os.listdir(folder)) == sorted(
        ["config.yaml", "thesis.tex", "src"]
    )


def test_overwrite_in_a_project_root_refuses_and_writes_nothing(tmp_path, monkeypatch, capsys):
    (tmp_path / "README.md").write_text("project\n")
    (tmp_path / "pkg").mkdir()
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    assert fit(".", "--overwrite") == 2
    one_line(capsys, "not a pyro-pots run")
    assert sorted(os.listdir(tmp_path)) == before  # not even a lock file


@pytest.mark.parametrize(
    "extra",
    [
        {"notes.txt": "mine"},  # a user's file next to a run
        {"plots/drawing.svg": "mine"},  # a user's file among the figures
        {"data/x.csv": "1,2"},  # a user's folder
    ],
)
def test_overwrite_refuses_a_run_holding_a_users_file(old_run, capsys, extra):
    for name, text in extra.items():
        (old_run / name).parent.mkdir(exist_ok=True)
        (old_run / name).write_text(text)
    before = tree(old_run)
    assert fit(old_run, "--overwrite") == 2
    one_line(capsys, "pyro-pots did not write")
    assert tree(old_run) == before


def test_a_config_yaml_alone_is_not_a_run(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.yaml").write_text("# pyro-pots config\n")  # a user's own config
    assert fit(folder, "--overwrite") == 2
    one_line(capsys, "no run.json")
    assert os.listdir(folder) == ["config.yaml"]


# -- 2. the new run replaces the old one only when it ends well ---------------------------
def test_overwrite_replaces_a_run_and_leaves_no_temporary_sibling(old_run, capsys):
    (old_run / "samples.npz").write_bytes(b"old samples")  # written by pyro-pots sample
    assert fit(old_run, "--overwrite", "--set", "train.max_epochs=4") == 0
    assert json.loads((old_run / "summary.json").read_text())["epochs"] == 4
    assert not (old_run / "samples.npz").exists()  # the old run's files went with it
    assert sorted(p.name for p in old_run.parent.iterdir()) == ["run"]


def test_a_failing_new_fit_leaves_the_old_run_intact(old_run, tmp_path, capsys):
    before = tree(old_run)
    huge = tmp_path / "huge.npz"
    np.savez(huge, X=(1e12 * (1 + np.random.default_rng(0).random((60, 8)))).astype(np.float32))
    # read as they are (data.scaling=none), values this large overflow float32's scores
    argv = ["--overwrite", "--data", str(huge), "--set", "model.likelihood=normal"]
    argv += ["--set", "data.scaling=none"]
    assert fit(old_run, *argv, "--set", "train.max_epochs=6") == 2
    capsys.readouterr()
    assert tree(old_run) == before  # the issue: only config.yaml and plots/ were left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.npz", "run"]  # no temp left
    assert main(["evaluate", "--run", str(old_run)]) == 0


def test_a_fit_killed_mid_overwrite_leaves_the_old_run_and_its_temp_is_cleaned(old_run):
    before = tree(old_run)
    stale = old_run.parent / ".run.tmp-999999999"  # what a SIGKILLed overwrite leaves
    stale.mkdir()
    (stale / "config.yaml").write_text("# pyro-pots config\n")
    (stale / "run.json").write_text('{"pyro_pots_run": 1}')
    assert tree(old_run) == before
    assert fit(old_run, "--overwrite") == 0
    assert not stale.exists()


def test_a_new_fit_that_fails_before_its_first_checkpoint_leaves_nothing(tmp_path, capsys):
    huge = tmp_path / "huge.npz"
    np.savez(huge, X=(1e12 * (1 + np.random.default_rng(0).random((60, 8)))).astype(np.float32))
    out = tmp_path / "new"
    sets = ["--set", "model.likelihood=normal", "--set", "data.scaling=none"]
    assert fit(out, "--data", str(huge), *sets) == 2
    capsys.readouterr()
    assert not out.exists()


# -- 3. growing never writes into the run it grows from -----------------------------------
@pytest.mark.parametrize("target", [".", "grown", "../run/./grown"])
def test_resume_from_refuses_an_out_that_is_or_is_inside_the_source(old_run, capsys, target):
    before = tree(old_run)
    out = old_run / target
    argv = ["fit", "--resume-from", str(old_run), "--out", str(out), "--overwrite", "--quiet"]
    assert main(argv) == 2
    one_line(capsys, "--out")
    assert tree(old_run) == before and not (old_run / "grown").exists()


def test_resume_from_refuses_an_out_around_the_source(tmp_path, capsys):
    source = tmp_path / "outer" / "run"
    assert fit(source) == 0
    capsys.readouterr()
    argv = ["fit", "--resume-from", str(source), "--out", str(tmp_path / "outer"), "--quiet"]
    assert main([*argv, "--overwrite"]) == 2
    one_line(capsys, "holds the run")
    assert (source / "summary.json").exists()


# -- 4. one writer at a time ----------------------------------------------------------------
def test_a_second_writer_is_refused_at_once(old_run, capsys):
    before = tree(old_run)
    with RunLock(old_run):  # another process's fit, as far as flock is concerned
        assert fit(old_run, "--overwrite") == 2
        one_line(capsys, "in use by another pyro-pots process")
        assert main(["fit", "--out", str(old_run), "--resume", "--quiet"]) == 2
        one_line(capsys, "in use")
        assert main(["ppc", "--run", str(old_run), "-n", "2"]) == 2
        one_line(capsys, "in use")
    assert tree(old_run) == before


def _subprocess_fit(out, *extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    data = ["--data", "synthetic:k=2,d=8,n=6000,seed=3", "--set", "train.max_epochs=40"]
    command = [sys.executable, "-m", "pyro_pots", "fit", "--out", str(out), *QUICK, *data]
    return subprocess.Popen(
        [*command, *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_two_processes_never_mix_their_runs(old_run, capsys):
    """A long fit over the run (another process) holds it: a second --overwrite, a
    --resume and an evaluate are refused in one line while it runs; the run it leaves is
    one run's files, not two runs' mixed."""
    before = tree(old_run)
    first = _subprocess_fit(old_run, "--overwrite")
    deadline = time.monotonic() + 120
    temps = []
    while not temps:  # the first writer has locked the run and started its temp sibling
        assert first.poll() is None, first.communicate()[1].decode()
        assert time.monotonic() < deadline
        temps = list(old_run.parent.glob(".run.tmp-*/checkpoint.pt"))
        time.sleep(0.01)
    assert fit(old_run, "--overwrite", "--set", "train.seed=7") == 2
    one_line(capsys, "in use by another pyro-pots process (pid")
    assert main(["fit", "--out", str(old_run), "--resume", "--quiet"]) == 2
    one_line(capsys, "in use")
    assert tree(old_run) == before  # the old run is untouched while the new one runs
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err.decode()
    summary = json.loads((old_run / "summary.json").read_text())
    assert summary["n_rows"] == 6000  # the first writer's run, whole
    assert load_config(old_run / "config.yaml").data.spec.endswith("n=6000,seed=3")
    state = torch.load(old_run / "checkpoint.pt", weights_only=True)
    assert state["config_sha256"] == run_dir.file_sha256(old_run / "config.yaml")
    assert json.loads((old_run / "run.json").read_text())["data"]["rows"] == 6000


# -- 5. the run's own data, and its own config ---------------------------------------------
def _npz(path, rows, seed):
    rng = np.random.default_rng(seed)
    np.savez(path, X=rng.random((rows, 8)).astype(np.float32))


def test_a_relative_data_path_is_the_same_file_from_any_directory(tmp_path, monkeypatch, capsys):
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir(), elsewhere.mkdir()
    _npz(here / "d.npz", 60, 0)
    _npz(elsewhere / "d.npz", 500, 1)  # another d.npz, where evaluate is run
    monkeypatch.chdir(here)
    assert fit("run", "--data", "d.npz") == 0
    assert load_config(here / "run" / "config.yaml").data.spec == str(here / "d.npz")
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["evaluate", "--run", str(here / "run")]) == 0
    assert json.loads(capsys.readouterr().out)["n_rows"] == 60  # the issue: 500, exit 0


def test_data_changed_since_the_fit_is_refused(tmp_path, capsys):
    data = tmp_path / "d.npz"
    _npz(data, 60, 0)
    out = tmp_path / "run"
    assert fit(out, "--data", str(data)) == 0
    labels = tmp_path / "labels.csv"
    labels.write_text("row,label\n0,1\n1,0\n")
    _npz(data, 60, 1)  # same shape, other values
    for argv in (
        ["evaluate", "--run", str(out)],
        ["label", "--run", str(out), "--labels", str(labels)],
        ["ppc", "--run", str(out), "-n", "2"],
        ["fit", "--out", str(out), "--resume", "--quiet", "--set", "train.max_epochs=4"],
    ):
        capsys.readouterr()
        assert main(argv) == 2, argv
        one_line(capsys, "same shape, different values")
    _npz(data, 70, 0)
    assert main(["evaluate", "--run", str(out)]) == 2
    one_line(capsys, "70 rows x 8 features, the run was fitted on 60 x 8")


@pytest.mark.parametrize("edit", ["model.num_pots: 3", "model.hidden_dim: 16", "train.lr"])
def test_a_config_edited_before_resume_is_refused(old_run, capsys, edit):
    path = old_run / "config.yaml"
    key = edit.split(".")[1].split(":")[0]
    lines = path.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{key}:"))
    name, _, value = lines[index].partition(":")
    lines[index] = f"{name}: {'5' if 'num_pots' in edit else '32' if 'hidden' in edit else '0.5'}"
    path.write_text("\n".join(lines) + "\n")
    argv = ["fit", "--out", str(old_run), "--resume", "--quiet", "--set", "train.max_epochs=5"]
    assert main(argv) == 2
    one_line(capsys, "was edited after the checkpoint was written")
    assert main(["evaluate", "--run", str(old_run)]) == 2
    one_line(capsys, "was edited after the checkpoint was written")


def test_resume_refuses_arguments_it_would_ignore_and_takes_repeated_ones(old_run, capsys):
    base = ["fit", "--out", str(old_run), "--resume", "--quiet"]
    assert main([*base, "--data", "digits"]) == 2
    one_line(capsys, "data.spec")
    assert main([*base, "--set", "model.num_pots=4", "--set", "train.lr=0.5"]) == 2
    line = one_line(capsys, "model.num_pots, train.lr")
    assert "train.max_epochs" in line
    # the command that made the run, with --resume added, goes on with it
    assert (
        main(["fit", "--out", str(old_run), *QUICK, "--resume", "--set", "train.max_epochs=4"]) == 0
    )
    assert json.loads((old_run / "summary.json").read_text())["epochs"] == 4


# -- 6. a fit that never trained does not report success -----------------------------------
def test_values_too_large_for_a_normal_likelihood_fail_in_one_line(tmp_path, capsys):
    huge = tmp_path / "huge.npz"
    np.savez(huge, X=(1e12 * (1 + np.random.default_rng(0).random((60, 8)))).astype(np.float32))
    out = tmp_path / "run"
    argv = ["--data", str(huge), "--set", "model.likelihood=normal", "--set", "train.max_epochs=8"]
    argv += ["--set", "data.scaling=none"]  # standardised, the same rows train
    assert fit(out, *argv) == 2  # it exited 0 with final_loss 0.0
    one_line(capsys, "training cannot proceed")  # and no Pyro warnings around it
    assert not (out / "summary.json").exists()


# -- unfinished runs ----------------------------------------------------------------------
def test_an_unfinished_run_is_not_read_as_a_finished_one(old_run, tmp_path, capsys):
    (old_run / "summary.json").unlink()  # as an interrupted fit leaves it
    labels = tmp_path / "labels.csv"
    labels.write_text("row,label\n0,1\n")
    for argv in (
        ["evaluate", "--run", str(old_run)],
        ["label", "--run", str(old_run), "--labels", str(labels)],
        ["sample", "--run", str(old_run)],
        ["ppc", "--run", str(old_run), "-n", "2"],
    ):
        assert main(argv) == 2, argv
        one_line(capsys, "--resume")
    with RunLock(old_run):
        assert main(["evaluate", "--run", str(old_run)]) == 2
        one_line(capsys, "being written by another pyro-pots process")


# -- 10. counts bounded before anything is allocated ----------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["sample", "--run", "r", "-n", str(10**15)],
        ["ppc", "--run", "r", "-n", str(10**12)],
        ["evaluate", "--run", "r", "--samples", str(10**12)],
        ["sample", "--run", "r", "-n", "9" * 5000],  # past Python's int-digit limit
        ["sample", "--run", "r", "-n", "1e3"],
    ],
)
def test_huge_counts_are_one_line(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    one_line(capsys, "must be an integer in [1, ")


# -- 11. outputs the OS refuses --------------------------------------------------------------
def _locked_out(monkeypatch):
    """The run directory cannot be written (as a read-only one; tests run as root, who
    may write anywhere, so the refusal is the OS call's)."""
    real_open = os.open

    def refusing(path, *args, **kwargs):
        if str(path).endswith(".pyro-pots.lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)


@pytest.mark.parametrize("command", ["evaluate", "label"])
def test_an_output_the_os_refuses_is_one_line(old_run, tmp_path, capsys, monkeypatch, command):
    labels = tmp_path / "labels.csv"
    labels.write_text("row,label\n0,1\n1,0\n")
    base = ["--run", str(old_run), *(["--labels", str(labels)] if command == "label" else [])]
    capsys.readouterr()
    assert main([command, *base, "--output", str(tmp_path)]) == 2
    one_line(capsys, "is a directory")
    if Path("/dev/full").exists():
        assert main([command, *base, "--output", "/dev/full", "--overwrite"]) == 2
        one_line(capsys, "No space left on device")
    from pyro_pots import labels as labels_module
    from pyro_pots import uncertainty

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(uncertainty, "write_scores_csv", read_only)
    monkeypatch.setattr(labels_module, "write_predictions_csv", read_only)
    out = tmp_path / "scores.csv"
    assert main([command, *base, "--output", str(out)]) == 2
    one_line(capsys, "Permission denied")
    assert not out.exists()


def test_ppc_and_resume_of_a_run_that_cannot_be_written_are_one_line(old_run, monkeypatch, capsys):
    _locked_out(monkeypatch)
    assert main(["ppc", "--run", str(old_run), "-n", "2"]) == 2
    one_line(capsys, "cannot be written (Permission denied)")
    argv = ["fit", "--out", str(old_run), "--resume", "--quiet", "--set", "train.max_epochs=4"]
    assert main(argv) == 2
    one_line(capsys, "cannot be written (Permission denied)")


def test_a_data_file_the_os_refuses_is_one_line(tmp_path, monkeypatch, capsys):
    from pyro_pots.training import fitting

    def unreadable(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "data.csv")

    monkeypatch.setattr(fitting, "load_data", unreadable)
    assert fit(tmp_path / "run") == 2
    one_line(capsys, "'data.csv' Permission denied")
    assert not (tmp_path / "run").exists()


# -- 12. checkpoints that do not fit their run -------------------------------------------------
def _edit_checkpoint(run, edit):
    path = run / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)


def _reshape(state):
    key = next(k for k in state["trainer"]["vae"] if state["trainer"]["vae"][k].dim() == 2)
    state["trainer"]["vae"][key] = torch.zeros(3, 5)


def _moments(state):
    moments = next(iter(state["trainer"]["optimizer"]["state"].values()))
    moments["exp_avg"] = torch.zeros(7)


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda s: s.update(format=99), "format 99"),
        (lambda s: s.update(data_dim=10**12), "data_dim"),
        (lambda s: s.update(data_dim=9), ("model entry", "is for 9 features")),
        (_reshape, "model entry"),
        (_moments, "optimizer entry"),
        (lambda s: s["trainer"].update(epoch="3"), "epoch '3' is not a count"),
        (lambda s: s["trainer"].update(history=[{"epoch": 1}]), "history row 0"),
        (lambda s: s["trainer"].pop("manager"), "no manager"),
        (lambda s: s["trainer"]["manager"].clear(), "does not fit"),
    ],
)
def test_an_inconsistent_checkpoint_is_one_line_on_resume_and_evaluate(
    old_run, capsys, edit, needle
):
    on_evaluate, on_resume = needle if isinstance(needle, tuple) else (needle, needle)
    _edit_checkpoint(old_run, edit)
    capsys.readouterr()
    assert main(["evaluate", "--run", str(old_run)]) == 2
    assert "\x1b" not in one_line(capsys, on_evaluate)
    argv = ["fit", "--out", str(old_run), "--resume", "--quiet", "--set", "train.max_epochs=5"]
    assert main(argv) == 2
    assert "\x1b" not in one_line(capsys, on_resume)


def test_a_new_run_never_takes_its_data_from_the_run_it_replaces(old_run, capsys):
    data = old_run / "data.npy"  # as PotsMixture.save writes the run's rows
    np.save(data, np.random.default_rng(0).random((60, 8)).astype(np.float32))
    before = tree(old_run)
    assert fit(old_run, "--overwrite", "--data", str(data)) == 2
    one_line(capsys, "is inside the run directory")
    assert tree(old_run) == before
    assert fit(old_run, "--overwrite") == 0  # data.npy is a run's own file: replaced
    assert not data.exists()


def test_ppc_on_other_data_still_refuses_an_unfinished_run(old_run, capsys):
    (old_run / "summary.json").unlink()
    argv = ["ppc", "--run", str(old_run), "-n", "2", "--data", "synthetic:k=2,d=8,n=40"]
    assert main(argv) == 2
    one_line(capsys, "--resume")
