"""``benchmarks/split_rounds.py``: the rounds a run's kicks would need if every pot could be
kicked once per round, from its decision log."""

import importlib.util
import json
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "split_rounds.py"
_spec = importlib.util.spec_from_file_location("split_rounds", _PATH)
split_rounds = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(split_rounds)


def _entry(action, pot, parent, **numbers):
    return {"action": action, "pot": pot, "parent": parent, "numbers": numbers}


#: 0 -> 1 and 0 -> 2 kept; 1 -> 3 kept (beside 0 -> 2); 2 -> 4 undone, then kept by its
#: retry; a screened proposal of pot 3 between them, which was never kicked
LOG = [
    _entry("unlock", 1, 0),
    _entry("accept", 1, 0),
    _entry("unlock", 2, 0),
    _entry("accept", 2, 0),
    _entry("unlock", 3, 1),
    _entry("accept", 3, 1),
    _entry("unlock", 4, 2),
    _entry("reject", 4, 2),
    _entry("unlock", 4, 3),
    _entry("reject", 4, 3, screened=True),
    _entry("unlock", 4, 2),
    _entry("accept", 4, 2),
]


def test_the_rounds_are_the_critical_path_of_the_kicks():
    assert len(split_rounds.kicked_outcomes(LOG)) == 5  # the screened proposal is no stage
    # rounds: 0->1 in 1, 0->2 in 2, 1->3 in 2 (after 1 exists), 2->4 in 3, its retry in 4
    assert split_rounds.rounds(LOG) == 4
    assert split_rounds.rounds(LOG[:6]) == 2  # 1 -> 3 shares round 2 with 0 -> 2
    assert split_rounds.rounds([]) == 0


def test_a_folder_of_runs_is_read_and_bad_paths_refused(tmp_path, capsys):
    run = tmp_path / "pyro-pots__digits__0"
    run.mkdir()
    (run / "stages.json").write_text(json.dumps(LOG))
    (run / "summary.json").write_text(json.dumps({"n_active": 5, "epochs": 300}))
    (tmp_path / "unfinished").mkdir()
    split_rounds.main([str(tmp_path)])
    assert "| pyro-pots__digits__0 | 5 | 300 | 5 | 4 | 0.80 |" in capsys.readouterr().out
    for bad, why in (
        (tmp_path / "nowhere", "is not a folder"),
        (tmp_path / "unfinished", "no finished run"),
    ):
        with pytest.raises(SystemExit) as exited:
            split_rounds.main([str(bad)])
        assert exited.value.code == 2 and why in capsys.readouterr().err
