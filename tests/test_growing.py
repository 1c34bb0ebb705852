"""``fit --resume-from``: a fitted run grows on new data into a new run directory; its pots
stay, the curriculum may open more, and the fitted run is left as it was."""

import hashlib
import json

from test_cli_and_examples import TINY

from pyro_pots.cli import main

OLD = "synthetic:k=2,d=8,n=240,seed=3"
NEW = "synthetic:k=3,d=8,n=360,seed=4"


def _digest(folder):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def test_a_run_grows_on_new_data_and_the_old_run_is_unchanged(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    assert main(["fit", "--out", str(old), *TINY, "--set", "train.max_epochs=12"]) == 0
    before = _digest(old)
    old_summary = json.loads((old / "summary.json").read_text())
    argv = ["fit", "--resume-from", str(old), "--out", str(new), "--data", NEW, "--quiet"]
    assert main([*argv, "--set", "train.max_epochs=10"]) == 0
    assert _digest(old) == before

    log = json.loads((new / "stages.json").read_text())
    grow = [entry for entry in log if entry["action"] == "grow"]
    assert len(grow) == 1 and grow[0]["epoch"] == old_summary["epochs"]
    shares = grow[0]["numbers"]["usage"]
    assert {int(k) for k in shares} == set(old_summary["active"])  # the old pots take the rows
    assert abs(sum(shares.values()) - 1) < 1e-9 and grow[0]["numbers"]["rows"] == 324
    summary = json.loads((new / "summary.json").read_text())
    assert summary["n_rows"] == 360 and old_summary["epochs"] < summary["epochs"] <= 22


def test_growing_refuses_bad_input_in_one_line(tmp_path, capsys):
    old = tmp_path / "old"
    assert main(["fit", "--out", str(old), *TINY, "--set", "train.max_epochs=3"]) == 0
    cases = [
        (["--resume-from", str(old), "--out", str(old)], "same directory"),
        (["--resume-from", str(tmp_path / "none"), "--out", str(tmp_path / "x")], "none"),
        (["--resume-from", str(old)], "needs --out"),
        (["--resume-from", str(old), "--out", str(tmp_path / "y"), "--data", "digits"], "features"),
        (["--resume-from", str(old), "--resume", "--out", str(tmp_path / "z")], "--resume"),
    ]
    for extra, needle in cases:
        capsys.readouterr()
        assert main(["fit", "--quiet", *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "y" / "summary.json").exists()


def test_growth_starts_from_the_final_model_not_a_split_the_budget_cut(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    # a budget that ends during the kick: the run's final model undoes that split
    assert main(["fit", "--out", str(old), *TINY, "--set", "train.max_epochs=4"]) == 0
    old_log = json.loads((old / "stages.json").read_text())
    assert old_log[-1]["restore"] and "budget" in old_log[-1]["reason"]
    final = set(json.loads((old / "summary.json").read_text())["active"])
    argv = ["fit", "--resume-from", str(old), "--out", str(new), "--data", NEW, "--quiet"]
    assert main([*argv, "--set", "train.max_epochs=1"]) == 0
    grow = next(e for e in json.loads((new / "stages.json").read_text()) if e["action"] == "grow")
    assert {int(k) for k in grow["numbers"]["usage"]} == final
