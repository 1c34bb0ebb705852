"""Pot -> class mapping: the vote, ties, unlabelled pots, the labels file, the CLI."""

import csv
import json
import os

import numpy as np
import pytest

from pyro_pots.cli import main
from pyro_pots.errors import PotsInputError
from pyro_pots.labels import UNKNOWN, map_pots, predict_labels, read_labels_file

#: a tiny curriculum run on two well separated synthetic clusters (seconds).
TINY = [
    "fit",
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
    *("--set", "train.max_epochs=12"),
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("labels") / "run"
    assert main([*TINY, "--out", str(out)]) == 0
    return out


def test_majority_vote_ties_and_unlabelled_pots_by_hand():
    pot_of_row = np.array([0, 0, 0, 1, 1, 2, 2, 3])
    labels = np.array([5, 5, 3, -1, 2, 4, 1, -1])
    result = map_pots(pot_of_row, labels, open_pots=[0, 1, 2, 3, 4])
    # pot 0: 5,5,3 -> 5; pot 1: only the 2 counts; pot 2: 4 vs 1, a tie -> the lower, 1
    assert result.label == {0: 5, 1: 2, 2: 1}
    assert result.votes[0] == {5: 2, 3: 1} and result.votes[2] == {1: 1, 4: 1}
    assert result.ties == [2]
    assert result.unlabelled == [3, 4]  # pot 3 holds only an unlabelled row; pot 4 nothing


def test_prediction_falls_back_to_the_next_labelled_pot_or_unknown():
    result = map_pots(np.array([0, 1]), np.array([7, 8]), open_pots=[0, 1, 2])
    resp = np.array(
        [
            [0.90, 0.05, 0.05],  # pot 0 -> 7
            [0.10, 0.30, 0.60],  # top pot 2 has no label; next labelled is pot 1 -> 8
            [0.20, 0.00, 0.80],  # next labelled is pot 0 -> 7
        ]
    )
    assert predict_labels(resp, result).tolist() == [7, 8, 7]
    assert predict_labels(resp, result, fallback="unknown").tolist() == [7, UNKNOWN, UNKNOWN]


def test_no_labelled_rows_is_an_input_error():
    with pytest.raises(PotsInputError, match="no labelled rows"):
        map_pots(np.array([0, 1]), np.array([-1, -1]), [0, 1])


def test_both_file_layouts_read_the_same_labels(tmp_path):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("row,label\n0,3\n4,1\n")
    column = tmp_path / "column.csv"
    column.write_text("label\n3\n\n-1\n\n1\n")  # empty and -1 both mean unlabelled
    expected = [3, UNKNOWN, UNKNOWN, UNKNOWN, 1]
    assert read_labels_file(pairs, 5).tolist() == expected
    assert read_labels_file(column, 5).tolist() == expected
    bare = tmp_path / "bare.csv"
    bare.write_text("3\n\n\n\n1\n\n")  # no header; trailing empty lines are not rows
    assert read_labels_file(bare, 5).tolist() == expected


@pytest.mark.parametrize(
    "text, needle",
    [
        ("label\n1\n2\n", "2 labels for 5 data rows"),
        ("label\n1\n2\n3\n4\n5\n6\n", "6 labels for 5 data rows"),
        ("label\n1\n2.5\n\n\n7\n", "not an integer"),
        ("label\n1\ncat\n\n\n7\n", "not an integer"),
        ("label\n1\n-3\n\n\n7\n", "must be >= 0"),
        ("row,label\n5,1\n", "out of range"),
        ("row,label\n-1,1\n", "out of range"),
        ("row,label\n0,1\n0,2\n", "already has label"),
        ("row,label\n0,-1\n", "must be >= 0"),
        ("row,label\n", "no labelled rows"),
        ("", "empty file"),
        # issue 16: numbers no label or row can be (a traceback, or a 5000-character line)
        ("label\n1\n1e30\n\n\n7\n", "not an integer"),
        ("label\n1\n" + "9" * 30 + "\n\n\n7\n", "must be <= 9007199254740992"),
        ("label\n1\n" + "9" * 5000 + "\n\n\n7\n", "must be <= 9007199254740992"),
        ("row,label\n0," + "9" * 30 + "\n", "must be <= 9007199254740992"),
        ("row,label\n" + "9" * 5000 + ",1\n", "out of range"),
        ("row,label\n0,1," + "x" * 5000 + "\n", "expected 'row,label'"),
    ],
)
def test_bad_labels_file_is_one_error_naming_the_file(tmp_path, text, needle):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(PotsInputError) as info:
        read_labels_file(path, 5)
    message = str(info.value)
    assert needle in message and "bad.csv" in message and "\n" not in message
    assert len(message) < 300, "a message quotes a bounded prefix of the input"


def test_labels_file_that_is_not_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "fifo.csv")  # reading it would wait for a writer forever
    with pytest.raises(PotsInputError, match="fifo.csv': not a regular file"):
        read_labels_file(tmp_path / "fifo.csv", 5)


def test_label_command_maps_predicts_and_writes(run, tmp_path, capsys):
    truth = np.array([int(r["label"]) for r in csv.DictReader(open(run / "assignments.csv"))])
    labelled = [int(np.flatnonzero(truth == k)[0]) for k in np.unique(truth)]  # one per class
    labels_file = tmp_path / "few.csv"
    labels_file.write_text("row,label\n" + "".join(f"{i},{truth[i]}\n" for i in labelled))
    output = tmp_path / "pred.csv"
    capsys.readouterr()
    argv = ["label", "--run", str(run), "--labels", str(labels_file), "--output", str(output)]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_labelled"] == len(labelled) and report["n_rows"] == len(truth)
    assert set(report) >= {"map", "votes", "ties", "unlabelled_pots", "accuracy"}
    rows = list(csv.DictReader(open(output)))
    assert [int(r["row"]) for r in rows] == list(range(len(truth)))
    assert [int(r["true_label"]) for r in rows] == truth.tolist()
    predicted = np.array([int(r["label"]) for r in rows])
    assert report["accuracy"] == pytest.approx(float((predicted == truth).mean()))
    # every labelled pot's rows get that pot's label (fallback "next" touches no other row)
    pots = np.array([int(r["pot"]) for r in rows])
    for pot, label in report["map"].items():
        assert (predicted[pots == int(pot)] == label).all()
    # never replaces a file without --overwrite
    assert main(argv) == 2
    assert "exists" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0


def test_label_command_bad_input_is_one_line(run, tmp_path, capsys):
    short = tmp_path / "short.csv"
    short.write_text("label\n1\n0\n")
    cases = [
        (["label", "--run", str(run), "--labels", str(short)], "short.csv"),
        (["label", "--run", str(tmp_path / "nope"), "--labels", str(short)], "nope"),
        (["label", "--run", str(run), "--labels", str(tmp_path / "missing.csv")], "missing.csv"),
    ]
    for argv, needle in cases:
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0]
