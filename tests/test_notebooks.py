"""Every notebook runs top to bottom on the tiny data set with the smoke profile."""

from pathlib import Path

import papermill as pm
import pytest

from usecases.core import stages

from .conftest import REPO, smoke_overrides

NOTEBOOKS = sorted((REPO / "notebooks").glob("*/*.ipynb"))


def test_notebooks_are_stripped_and_reports_have_parameters():
    import nbformat

    assert NOTEBOOKS
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), path
        assert any("parameters" in c.metadata.get("tags", []) for c in code), path


@pytest.fixture
def prepared(smoke_cfg):
    cfg = smoke_cfg()
    stages.prepare(cfg)
    return cfg


def test_explore_notebook(prepared, tmp_path):
    pm.execute_notebook(
        str(REPO / "notebooks/crop_disease/01-explore.ipynb"),
        str(tmp_path / "explore.ipynb"),
        parameters={
            "raw_dir": str(Path(prepared.paths.raw) / "crop_disease"),
            "processed_dir": str(Path(prepared.paths.processed) / "crop_disease"),
            "samples_per_class": 2,
        },
        progress_bar=False,
        cwd=str(tmp_path),
    )


def test_train_notebook(prepared, tiny_project, tmp_path):
    pm.execute_notebook(
        str(REPO / "notebooks/crop_disease/02-train.ipynb"),
        str(tmp_path / "train.ipynb"),
        parameters={
            "overrides": smoke_overrides(tiny_project) + ["name=nb"],
            "workdir": str(tiny_project),
        },
        progress_bar=False,
        cwd=str(tiny_project),
    )
    assert (Path(prepared.paths.models) / "crop_disease/nb/metrics.json").is_file()
