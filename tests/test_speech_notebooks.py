"""The speech notebooks run top to bottom on the tiny corpora of test_speech_prepare: the report
through `zoo report`'s code path on a trained and evaluated Hausa release, and the interactive
training notebook on Yoruba, whose release (one test utterance, characters the model never saw,
no keyword to spot) then goes through the report's empty-case guards."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from usecases.core import stages
from usecases.core.checkpoint import read_metadata

from .conftest import REPO, smoke_overrides
from .test_speech_prepare import LANGUAGES, tiny_trained_project

NOTEBOOKS = REPO / "notebooks" / "speech"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    """A tiny corpus, prepared, a crnn_tiny trained for a few steps on Hausa, and evaluated."""
    root = tmp_path_factory.mktemp("speech_nb")
    with tiny_trained_project(root) as cfg:
        yield root, cfg, stages.evaluate(cfg)


def outputs(path: Path) -> list[tuple[str, dict]]:
    """(cell source, output) for every output of an executed notebook."""
    nb = nbformat.read(path, as_version=4)
    return [(c.source, o) for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def text_of(output: dict) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    data = output.get("data", {})
    return "\n".join(data[k] for k in ("text/markdown", "text/html", "text/plain") if k in data)


def read_predictions(model: Path) -> list[dict]:
    with open(model / "predictions.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_report_notebook(project):
    root, cfg, metrics = project
    html = stages.report(cfg)
    assert html.is_file()
    outs = outputs(html.with_suffix(".ipynb"))
    assert not [o for _, o in outs if o.get("output_type") == "error"]
    every = "\n".join(text_of(o) for _, o in outs)
    assert "CC0-1.0" in every and "Smoke run" in every  # the fixture cuts splits to 8 utterances

    # The decoder table: every decoder's test CER, the chosen one marked.
    table = next(
        text_of(o)
        for src, o in outs
        if src.startswith("table = ") and "text/html" in o.get("data", {})
    )
    assert f"{metrics['decoder']} (chosen on dev)" in table
    for name, scores in metrics["decoders"].items():
        assert f">{scores['cer']:.3f}</td>" in table, name
        assert f">{metrics['dev_cer'][name]:.3f}</td>" in table, name

    # The worst utterance first, with its reference, a spectrogram and a player per utterance.
    preds = read_predictions(stages.model_dir(cfg))
    worst = max(preds, key=lambda p: float(p["cer"]))
    section = [o for src, o in outs if src.startswith("logmel = ")]
    notes = [text_of(o) for o in section if "text/markdown" in o.get("data", {})]
    assert notes[0].startswith(f"**{worst['id']}**") and worst["reference"] in notes[0]
    assert sum("image/png" in o.get("data", {}) for o in section) == len(preds)
    assert sum("<audio" in o.get("data", {}).get("text/html", "") for o in section) == len(preds)

    keywords = json.loads((stages.model_dir(cfg) / "keywords.json").read_text(encoding="utf-8"))
    assert keywords["keywords"] and all(f">{k}</th>" in every for k in keywords["keywords"])
    assert "Real-time factor on one CPU thread" in every


def test_train_notebook_and_its_report(project, tmp_path):
    root, _, _ = project
    pm.execute_notebook(
        str(NOTEBOOKS / "02-train.ipynb"),
        str(tmp_path / "train.ipynb"),
        parameters={
            "workdir": str(root),
            "language": "yor",
            "model": "crnn_tiny",
            "epochs": 1,
            "name": "nb",
            "overrides": smoke_overrides(root) + ["~data.languages", LANGUAGES],
        },
        progress_bar=False,
        cwd=str(root),
    )
    model = root / "models/speech/nb"
    assert read_metadata(model / stages.WEIGHTS)["language"] == "yor"
    metrics = json.loads((model / stages.METRICS).read_text(encoding="utf-8"))
    assert metrics["language"].startswith("yor") and metrics["n"] == 1
    trained = "\n".join(text_of(o) for _, o in outputs(tmp_path / "train.ipynb"))
    assert f"{metrics['decoder']} (chosen on dev)" in trained
    assert "yo_3.flac" in trained and "ẹ kú àárọ̀" in trained  # transcribed with `predict`

    # The report on this release: untrained model, characters outside its alphabet, no keyword.
    pm.execute_notebook(
        str(NOTEBOOKS / "report.ipynb"),
        str(tmp_path / "report.ipynb"),
        parameters={
            "model_dir": str(model),
            "processed_dir": str(root / "data/processed/speech"),
            "raw_dir": str(root / "data/raw/speech"),
        },
        progress_bar=False,
        cwd=str(tmp_path),
    )
    report = "\n".join(text_of(o) for _, o in outputs(tmp_path / "report.ipynb"))
    assert "licence **MIT**" in report and "ẹ kú àárọ̀" in report
    assert metrics["oov_characters"] and all(
        f"U+{ord(c):04X}" in report for c in metrics["oov_characters"]
    )
    keywords = json.loads((model / "keywords.json").read_text(encoding="utf-8"))
    assert ("No keyword was scored" in report) == (not keywords.get("metrics"))
    if not read_predictions(model)[0]["hypothesis"]:
        assert "_(empty)_" in report
