"""CUDA: every tensor follows ``train.device``. Skipped cleanly on machines without a GPU."""

import json

import pytest
import torch
from pyro.infer import Trace_ELBO
from test_cli_and_examples import TINY

from pyro_pots import PotsVAE, pots_mask
from pyro_pots.cli import main

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_model_and_guide_run_on_cuda_and_agree_with_cpu():
    torch.manual_seed(0)
    vae = PotsVAE(data_dim=8, num_pots=3, hidden_dim=16, decoder_hidden_dim=16)
    x = torch.rand(32, 8)
    active = pots_mask(3, [0, 1])
    resp_cpu = vae.responsibilities(x, active)
    vae_gpu = vae.to("cuda")
    resp_gpu = vae_gpu.responsibilities(x.cuda(), active.cuda())
    assert resp_gpu.device.type == "cuda"
    assert torch.allclose(resp_gpu.cpu(), resp_cpu, atol=1e-5)
    loss = Trace_ELBO().differentiable_loss(vae_gpu.model, vae_gpu.guide, x.cuda(), active.cuda())
    loss.backward()
    assert loss.device.type == "cuda" and torch.isfinite(loss)


def test_fit_on_cuda_writes_a_complete_run(tmp_path):
    out = tmp_path / "run"
    argv = ["fit", *TINY, "--out", str(out), "--set", "train.device=cuda"]
    assert main([*argv, "--set", "train.max_epochs=8"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_active"] >= 1 and summary["epochs"] <= 8
    assert main(["evaluate", "--run", str(out)]) == 0  # a CUDA checkpoint loads anywhere
