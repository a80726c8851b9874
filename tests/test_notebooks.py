"""The example notebooks run top to bottom, with a small budget."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = pathlib.Path(__file__).parents[1] / "examples"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["01_quickstart.ipynb", "02_compare_baselines.ipynb", "03_gail_tutorial_swap.ipynb"])
def test_notebook_runs(name, monkeypatch):
    monkeypatch.setenv("NOTEBOOK_BUDGET", "1000")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    resources = {"metadata": {"path": str(EXAMPLES)}}
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources=resources).execute()
