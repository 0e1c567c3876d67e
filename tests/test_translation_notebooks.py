"""The translation notebooks run top to bottom on the tiny corpus of test_translation (explore,
report through `zoo report`'s code path, and the interactive training notebook)."""

from __future__ import annotations

from pathlib import Path

import papermill as pm
import pytest

from usecases.core import stages

from .conftest import REPO, smoke_overrides
from .test_translation import TINY, tiny_project

NOTEBOOKS = REPO / "notebooks" / "translation"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("mt_nb")
    with tiny_project(root) as (cfg, _, _, _):
        yield root, cfg


def test_explore_notebook(project, tmp_path):
    root, _ = project
    pm.execute_notebook(
        str(NOTEBOOKS / "01-explore.ipynb"),
        str(tmp_path / "explore.ipynb"),
        parameters={
            "raw_dir": str(root / "data/raw/translation"),
            "processed_dir": str(root / "data/processed/translation"),
        },
        progress_bar=False,
        cwd=str(tmp_path),
    )


def test_report_notebook(project):
    _, cfg = project
    html = stages.report(cfg)
    assert html.is_file()
    text = html.read_text(encoding="utf-8")
    assert "FLORES-200 devtest" in text and "MAFAND-MT test" in text
    assert "checked by a speaker before any official use" in text


def test_train_notebook(project, tmp_path):
    root, _ = project
    pm.execute_notebook(
        str(NOTEBOOKS / "02-train.ipynb"),
        str(tmp_path / "train.ipynb"),
        parameters={
            "overrides": smoke_overrides(root) + TINY + ["name=nb"],
            "workdir": str(root),
        },
        progress_bar=False,
        cwd=str(root),
    )
    assert (Path(root) / "models/translation/nb/metrics.json").is_file()
