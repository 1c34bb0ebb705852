"""
Every script in ``examples/`` runs with tiny settings, the way Pyro's own
``tests/test_examples.py`` does it: a list of command lines, each run as ``__main__`` (here
in-process with :mod:`runpy`, so the result its ``__main__`` block keeps can be checked),
and a test that fails when an example is not in the list.
"""

import math
import runpy
import sys
from pathlib import Path

import pytest

from pyro_pots import PotsVAE, ppc
from pyro_pots.model import LOGIT_PRIORS, LOGITS_GUIDES

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"

#: config overrides for a curriculum of a few epochs with small networks.
TINY_SET = " ".join(
    f"--set {item}"
    for item in (
        "model.hidden_dim=16",
        "model.decoder_hidden_dim=16",
        "curriculum.min_stage_epochs=2",
        "curriculum.patience=1",
        "curriculum.rel_tol=0.5",
        "curriculum.kick_steps=4",
        "prior.lam_warmup_epochs=2",
        "train.threads=1",
    )
)
TINY_DATA = "synthetic:k=2,d=8,n=120,seed=3"


def check_svi_digits(ns, out):
    lines = [line for line in out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and "mean max resp" in lines[0]
    assert isinstance(ns["vae"], PotsVAE)


def check_curriculum(ns, out):
    result = ns["result"]
    assert result["decisions"] and result["decisions"][-1]["action"] == "stop"
    assert result["n_active"] == len(result["active"]) >= 1
    assert set(result["clustering"]) == {"acc", "nmi", "ari"}
    for entry in result["decisions"]:  # each decision printed as it was taken
        assert f"epoch {entry['epoch']:4d}  stage {entry['stage']:2d}  {entry['action']}" in out


def check_swap(ns, out):
    rows = ns["result"]
    assert {(r["prior"], r["guide"]) for r in rows} == {
        (p, g) for p in LOGIT_PRIORS for g in LOGITS_GUIDES
    }
    assert all(0 <= r["NMI"] <= 1 and 0 < r["mean max resp"] <= 1 for r in rows)


def check_custom_guide(ns, out):
    result = ns["result"]
    assert "samples every latent site" in out
    assert math.isfinite(result["loss"]) and set(result["ppc"]) == set(ppc.BUILTIN_STATISTICS)


def check_ppc_digits(ns, out):
    result = ns["result"]
    run = Path(result["run"])
    assert (run / ppc.PPC_JSON).exists() and (run / "plots" / "ppc_replicates.png").exists()
    assert result["n_rows"] == 1797 and result["num_samples"] == 3
    assert result["ink"]["size"] == 1 and 0 <= result["ink"]["p_value"] <= 1


def check_synthetic(ns, out):
    result = ns["result"]
    assert result["true_k"] == 2 and 1 <= result["k_found"] <= 3
    assert f"K found {result['k_found']} (true K 2)" in out


#: (command line, check of the ``__main__`` namespace and the printed output); ``{tmp}``
#: is a fresh temporary directory.
EXAMPLES = [
    ("svi_digits.py --num-epochs 2 --print-every 1 --num-pots 4", check_svi_digits),
    ("svi_digits.py --num-epochs 2 --print-every 1 --num-pots 4 --jit", check_svi_digits),
    (f"curriculum_digits.py -n 8 --num-pots 3 --print-every 2 {TINY_SET}", check_curriculum),
    (
        f"swap_priors_and_guides.py --data {TINY_DATA} --num-pots 3 -n 4 --kick-steps 4 {TINY_SET}",
        check_swap,
    ),
    (
        "custom_guide.py -n 1 --num-pots 4 --open-pots 2 --channels 4 --ppc-samples 2",
        check_custom_guide,
    ),
    (
        "custom_guide.py -n 1 --num-pots 4 --open-pots 2 --channels 4 --ppc-samples 2 --jit",
        check_custom_guide,
    ),
    (
        f"ppc_digits.py --out {{tmp}} -n 3 --num-pots 3 --num-samples 3 {TINY_SET}",
        check_ppc_digits,
    ),
    (
        f"synthetic_known_k.py --k 2 --num-rows 120 --num-features 8 --num-pots 3 -n 6 {TINY_SET}",
        check_synthetic,
    ),
]


def test_coverage():
    listed = {command.split()[0] for command, _ in EXAMPLES}
    for path in sorted(EXAMPLES_DIR.glob("*.py")):
        if path.name not in listed:
            pytest.fail(f"example {path.name} is not tested: add it to EXAMPLES")


@pytest.mark.parametrize(
    "command, check", EXAMPLES, ids=[f"{i}-{c.split()[0]}" for i, (c, _) in enumerate(EXAMPLES)]
)
def test_example(command, check, tmp_path, monkeypatch, capsys):
    filename, *args = command.format(tmp=tmp_path).split()
    monkeypatch.setattr(sys, "argv", [filename, *args])
    try:
        namespace = runpy.run_path(str(EXAMPLES_DIR / filename), run_name="__main__")
    except SystemExit as exit_info:  # argparse errors and explicit exits
        pytest.fail(f"{filename} exited with {exit_info.code}")
    check(namespace, capsys.readouterr().out)


def run_example(command, monkeypatch, capsys):
    filename, *args = command.split()
    monkeypatch.setattr(sys, "argv", [filename, *args])
    runpy.run_path(str(EXAMPLES_DIR / filename), run_name="__main__")
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "command",
    [
        "svi_digits.py --num-epochs 2 --print-every 1 --num-pots 4 --warmup-epochs 1",
        "custom_guide.py -n 2 --num-pots 4 --open-pots 2 --channels 4 --ppc-samples 2 "
        "--warmup-epochs 1 --print-every 1",
    ],
)
def test_jit_examples_follow_lambda(command, monkeypatch, capsys):
    """lambda goes 0 -> 1 between the two epochs; the compiled ELBO must see it. The two
    runs draw their noise differently, so they agree to a small tolerance, not exactly:
    a frozen lambda moved the loss by about 20%."""
    losses = []
    for flag in ("", " --jit"):
        out = run_example(command + flag, monkeypatch, capsys)
        rows = [line.split() for line in out.splitlines() if line.startswith("epoch")]
        assert [row[row.index("lambda") + 1] for row in rows] == ["0.00", "1.00"]
        losses.append([float(row[row.index("loss/row") + 1]) for row in rows])
    eager, jit = losses
    assert jit == pytest.approx(eager, rel=0.01)
