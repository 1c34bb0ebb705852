import json
import runpy
import sys
from pathlib import Path

import pytest

from pyro_pots.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_fit_writes_a_run_directory(tmp_path):
    out = tmp_path / "run"
    code = main(
        [
            "fit",
            "--out",
            str(out),
            "--num-epochs",
            "2",
            "--num-pots",
            "4",
            "--open-pots",
            "2",
            "--warmup-epochs",
            "1",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_active"] == 2 and summary["active"] == [0, 1]
    assert sum(summary["usage"].values()) == pytest.approx(1.0)
    assert set(summary["clustering"]) == {"acc", "nmi", "ari"}
    for name in (
        "history.csv",
        "model.pt",
        "plots/training.png",
        "plots/pot_means.png",
        "plots/responsibilities.png",
    ):
        assert (out / name).stat().st_size > 0
    assert len((out / "history.csv").read_text().splitlines()) == 3


def test_fit_refuses_to_overwrite_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    assert main(["fit", "--out", str(out), "--num-epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0] and "--overwrite" in err[0]
    assert (out / "summary.json").read_text() == "{}"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--data", "no_such_file.npz"], "no_such_file.npz"),
        (["--open-pots", "5", "--num-pots", "3"], "--open-pots"),
    ],
)
def test_fit_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, needle):
    assert main(["fit", "--out", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not (tmp_path / "r").exists()


def test_bad_argument_value_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--num-epochs", "0"])
    assert exit_info.value.code == 2
    assert "--num-epochs" in capsys.readouterr().err


@pytest.mark.parametrize("jit", [False, True])
def test_svi_digits_example_runs(monkeypatch, capsys, jit):
    argv = ["svi_digits.py", "--num-epochs", "2", "--print-every", "1", "--num-pots", "4"]
    monkeypatch.setattr(sys, "argv", argv + (["--jit"] if jit else []))
    runpy.run_path(str(ROOT / "examples" / "svi_digits.py"), run_name="__main__")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and "mean max resp" in lines[0]
