"""The cut contrast (``curriculum/gaps.py``): a boundary across a gap against one through
the middle of a mode, on point sets whose answer is known by construction."""

import math

import pytest
import torch

from pyro_pots.curriculum.gaps import cut_contrast, inner_cut_ratio
from pyro_pots.curriculum.neighbours import cut_ratio, nearest_neighbours
from pyro_pots.curriculum.proposals import spectral_bisection


def _blobs(*centres, n=200, dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.randn(n, dim, generator=g) + torch.tensor(c) for c in centres])
    return x.double(), torch.arange(len(centres)).repeat_interleave(n)


def test_inner_cut_is_the_cut_ratio_of_the_pots_own_spectral_bisection():
    x, blob = _blobs((0.0, 0.0), (30.0, 0.0))
    graph = nearest_neighbours(x, 10)
    pots = torch.where(torch.arange(len(x)) % 3 == 0, 7, 4)  # pot 4 spans both blobs
    rows = (pots == 4).nonzero().squeeze(-1)
    halves = torch.as_tensor(spectral_bisection(x[rows], 0))
    labels = torch.full_like(pots, -1)
    labels[rows] = halves
    assert inner_cut_ratio(pots, graph, x, 4, seed=0) == cut_ratio(labels, graph, 0, 1)
    # a pot spread over two blobs has a gap inside: its best bisection cuts nearly nothing
    assert inner_cut_ratio(blob, graph, x, 0, 0) > 0.02
    assert inner_cut_ratio(torch.zeros_like(blob), graph, x, 0, 0) < 0.01
    assert inner_cut_ratio(blob, graph, x, 5, 0) is None  # an empty pot


def test_a_subset_of_a_pot_counts_only_the_edges_among_its_rows():
    x, _ = _blobs((0.0, 0.0), n=300)
    graph = nearest_neighbours(x, 10)
    pots = torch.zeros(300, dtype=torch.long)
    subset = inner_cut_ratio(pots, graph, x, 0, seed=1, max_rows=150)
    # the same bisection by hand: the first 150 rows of the seeded permutation
    rows = torch.randperm(300, generator=torch.Generator().manual_seed(1))[:150]
    labels = torch.full_like(pots, -1)
    labels[rows] = torch.as_tensor(spectral_bisection(x[rows], 1))
    assert subset == cut_ratio(labels, graph, 0, 1)


def _factor(u, v):
    return max(u / v, v / u)


def test_a_boundary_across_a_gap_has_a_large_contrast():
    x, blob = _blobs((0.0, 0.0), (12.0, 0.0))
    graph = nearest_neighbours(x, 10)
    result = cut_contrast(blob, graph, x, 0, 1, seed=0)
    assert result["cut_ratio"] == 0.0 and math.isinf(result["cut_contrast"])
    assert result["inner_cut_0"] > 0 and result["inner_cut_1"] > 0


def test_a_straight_cut_through_one_blob_is_sparse_against_random_yet_has_no_contrast():
    # the synthetic K = 3 failure: one 2-d mode halved by a straight line cuts few edges
    # against a random split, but about as many as the best cut inside either half
    x, _ = _blobs((0.0, 0.0), n=600)
    graph = nearest_neighbours(x, 10)
    halves = (x[:, 0] > 0).long()
    result = cut_contrast(halves, graph, x, 0, 1, seed=0)
    assert result["cut_ratio"] < 0.15  # passes the cut-ratio test
    assert result["cut_contrast"] < 2.0
    expected = max(_factor(result["cut_ratio"], result[f"inner_cut_{p}"]) for p in (0, 1))
    assert result["cut_contrast"] == pytest.approx(expected)


def test_two_touching_blobs_cut_at_their_neck_have_a_contrast():
    # no gap in the graph (the blobs touch), yet the neck is much sparser than a cut
    # through the middle of either blob
    x, blob = _blobs((0.0, 0.0), (5.0, 0.0), n=300)
    graph = nearest_neighbours(x, 10)
    neck = cut_contrast(blob, graph, x, 0, 1, seed=0)
    assert neck["cut_ratio"] > 0 and neck["cut_contrast"] > 2.0


def test_a_side_with_a_gap_inside_gives_a_large_contrast():
    # an early split: side 1 still holds two far blobs, so its own best cut is a gap, far
    # sparser than the boundary, which runs through the middle of the first blob
    x, blob = _blobs((0.0, 0.0), (30.0, 0.0), n=300)
    graph = nearest_neighbours(x, 10)
    pots = torch.where((blob == 1) | (x[:, 0] > 0), 1, 0)
    result = cut_contrast(pots, graph, x, 0, 1, seed=0)
    assert result["inner_cut_1"] < 0.01 < result["cut_ratio"]
    assert result["cut_contrast"] >= result["cut_ratio"] / max(result["inner_cut_1"], 1e-12)
    assert result["cut_contrast"] > 2.0


def test_no_contrast_without_a_boundary():
    x, blob = _blobs((0.0, 0.0), (12.0, 0.0))
    graph = nearest_neighbours(x, 10)
    assert cut_contrast(blob, graph, x, 0, 3, seed=0) is None  # pot 3 is empty


def test_without_inner_cuts_the_boundary_is_still_reported():
    # two pots of three rows each: no inner bisection (fewer than four rows), yet the
    # boundary's cut ratio is what max_cut_ratio and min_usage_apart judge by
    x, _ = _blobs((0.0, 0.0), n=6)
    graph = nearest_neighbours(x, 3)
    pots = torch.tensor([0, 1, 0, 1, 0, 1])
    result = cut_contrast(pots, graph, x, 0, 1, seed=0)
    assert result == {"cut_ratio": cut_ratio(pots, graph, 0, 1)}
