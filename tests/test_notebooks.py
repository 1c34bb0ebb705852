"""
The notebooks in ``notebooks/`` run: each one is executed in smoke mode (``CI`` set, which
each notebook reads as ``smoke_test = "CI" in os.environ``) from a copy in a temporary
directory, so the committed notebooks and their full-run outputs are never touched.

A notebook added to ``notebooks/`` is picked up by the glob below without editing this file.
The kernel is a kernelspec written into the test's temporary directory that runs
``sys.executable -m ipykernel_launcher``: the interpreter running the tests (and its
``pyro_pots``), whatever kernelspecs the user's Jupyter directories hold.
"""

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SMOKE_SWITCH = 'smoke_test = "CI" in os.environ'
KERNEL = "pyro-pots-tests"


def test_the_notebooks_directory_is_listed():
    names = {path.name for path in NOTEBOOKS}
    assert {
        "quickstart.ipynb",
        "swapping_guides_and_priors.ipynb",
        "curriculum_by_hand.ipynb",
        "posterior_predictive_checks.ipynb",
    } <= names
    readme = (NOTEBOOK_DIR / "README.md").read_text()
    assert all(name in readme for name in names), "list every notebook in notebooks/README.md"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_committed_notebook_has_a_smoke_switch_and_full_run_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert any(SMOKE_SWITCH in cell.source for cell in code), f"no `{SMOKE_SWITCH}` line"
    counts = [cell.execution_count for cell in code]
    assert counts == list(range(1, len(code) + 1)), "run every cell once, top to bottom"
    outputs = [output for cell in code for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    assert any("image/png" in output.get("data", {}) for output in outputs), "no figure"


def _kernel_manager(folder: Path) -> KernelManager:
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "pyro-pots tests", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    specs = KernelSpecManager(kernel_dirs=[str(folder / "kernels")])
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_in_smoke_mode(path, tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # the kernel imports pyro_pots from this checkout even when it is not installed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("TMPDIR", str(work))  # the notebooks' run directories land here
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        km=_kernel_manager(tmp_path),
        timeout=120,
        record_timing=False,
        resources={"metadata": {"path": str(work)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on an error
    nbformat.write(nb, work / path.name)
    assert not [
        output
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
