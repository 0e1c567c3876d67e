"""The document-fraud use case end to end on a tiny generated corpus: fetch (generate), prepare
(check, split, OCR), train (tile CNN + fields head + fusion), evaluate, report, predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from usecases.core import stages
from usecases.core.checkpoint import read_metadata
from usecases.core.config import compose
from usecases.core.registry import get_usecase
from usecases.doc_fraud.features import NOVELTY_FEATURES

from .conftest import REPO, smoke_overrides

TINY = [
    "data.generator.n_documents=40",
    "data.limit_per_class=null",
    "trainer.max_steps=3",
]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("docfraud")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("ZOO_CONFIG_DIR", str(REPO / "configs"))
        overrides = smoke_overrides(root) + TINY
        cfg = get_usecase("doc_fraud").config(compose(overrides, usecase="doc_fraud"))
        raw = stages.fetch(cfg)
        stamp = (raw / "GENERATOR.json").stat().st_mtime_ns
        assert stages.fetch(cfg) == raw  # same arguments: up to date, not regenerated
        assert (raw / "GENERATOR.json").stat().st_mtime_ns == stamp
        stages.prepare(cfg)
        stages.train(cfg)
        metrics = stages.evaluate(cfg)
        yield root, cfg, overrides, metrics


def test_prepare_keeps_the_holdout_kind_in_test_and_ocrs_every_document(project):
    root, cfg, _, _ = project
    processed = Path(cfg.paths.processed) / "doc_fraud"
    summary = json.loads((processed / "summary.json").read_text())
    holdout = summary["holdout_type"]
    assert holdout == "font"
    assert holdout in summary["forgery_types"]["test"]
    assert holdout not in summary["forgery_types"]["train"]
    assert holdout not in summary["forgery_types"]["val"]
    ocr = (processed / "ocr.jsonl").read_text().splitlines()
    manifest = (processed / "manifest.csv").read_text().splitlines()
    assert len(ocr) == len(manifest) - 1 == 40
    # No wall-clock time in the stored readings: the stage's output is the same on every run.
    assert not any("seconds" in json.loads(line)["ocr"] for line in ocr)


def test_release_holds_the_heads_and_test_figures(project):
    root, cfg, _, metrics = project
    out = stages.model_dir(cfg)
    meta = read_metadata(out / "weights.safetensors")
    assert set(meta["heads"]) >= {"fields", "fusion", "tail", "gate", "threshold"}
    assert meta["heads"]["tail"]["names"] == list(NOVELTY_FEATURES)
    fields = meta["heads"]["fields"]
    # One expert per forgery kind seen in training (the tiny corpus may pool rare kinds); the
    # held-out kind never has one.
    experts = fields["experts"]
    kinds = {k for e in experts for k in e["kinds"]}
    summary = json.loads((Path(cfg.paths.processed) / "doc_fraud" / "summary.json").read_text())
    assert kinds and summary["holdout_type"] not in kinds
    assert meta["heads"]["profile"]["names"] == [n for n in fields["names"] if n.startswith("dev_")]
    for e in experts:
        assert len(e["coef"]) == len(e["names"]) == len(fields["names"]) and e["spread"] > 0
        # Deviations from the authentic pages' profile are suspicion features: never negative.
        dev = [c for n, c in zip(e["names"], e["coef"], strict=True) if n.startswith("dev_")]
        assert len(dev) > 0 and min(dev) >= 0.0
    for key in (
        "auroc",
        "recall_at_1pct_fpr",
        "auroc_without_novelty",
        "auroc_holdout",
        "recall_per_type",
        "ocr",
    ):
        assert key in metrics, key
    assert 0.0 <= metrics["auroc"] <= 1.0
    assert set(metrics["errors_per_layout"]) == {"benin", "niger"}
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["split"] == "test" and saved["n"] == metrics["n"]
    rows = (out / "predictions.csv").read_text().splitlines()
    assert len(rows) - 1 == metrics["n"]
    assert "## Responsible use" in (out / "model_card.md").read_text()


def test_report_notebook_runs(project):
    root, cfg, _, _ = project
    html = stages.report(cfg)
    assert html.is_file() and "ROC" in html.read_text()


def _write_inputs(root: Path, cfg) -> dict[str, Path]:
    raw = Path(cfg.paths.raw) / "doc_fraud"
    docs = get_usecase("doc_fraud").documents(cfg, "test")
    authentic = next(d for d in docs if d.label == "authentic")
    d = root / "inputs"
    d.mkdir(exist_ok=True)
    page = Image.open(raw / authentic.path).convert("RGB")
    files = {
        "authentic": raw / authentic.path,
        "upside_down": d / "upside_down.jpg",
        "blank": d / "blank.png",
        "noise": d / "noise.png",
        "text": d / "notes.jpg",
        "pdf": d / "scan.pdf",
        "huge": d / "huge.png",
    }
    page.rotate(180).save(files["upside_down"], quality=92)
    Image.new("RGB", page.size, (255, 255, 255)).save(files["blank"])
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (400, 300, 3), dtype=np.uint8)).save(files["noise"])
    files["text"].write_text("not an image\n")
    files["pdf"].write_bytes(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n")
    Image.new("L", (20000, 20000), 255).save(files["huge"])
    return files


def test_predict_gives_a_verdict_or_a_clear_message(project):
    root, cfg, overrides, _ = project
    files = _write_inputs(root, cfg)
    env = dict(os.environ, ZOO_CONFIG_DIR=str(REPO / "configs"))
    proc = subprocess.run(
        [sys.executable, "-m", "usecases.cli", "predict", "doc_fraud", "--json"]
        + [f"--models={cfg.paths.models}"]
        + [str(p) for p in files.values()],
        capture_output=True,
        text=True,
        cwd=root,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr  # some inputs are refused
    answers = {Path(r["input"]).name: r for r in map(json.loads, proc.stdout.splitlines())}
    ok = answers[files["authentic"].name]
    assert ok["verdict"] in ("no forgery detected", "probably forged: inspect")
    assert 0.0 <= ok["score"] <= 1.0 and ok["fields"]["country"]
    assert ok["novelty"] >= 0.0
    assert answers["upside_down.jpg"]["fields"]["surname"] == ok["fields"]["surname"]
    for name in ("blank.png", "noise.png"):
        assert answers[name]["verdict"].startswith("not readable"), answers[name]
    assert (
        "not an image" in answers["notes.jpg"]["error"] or "cannot" in answers["notes.jpg"]["error"]
    )
    assert "pdftoppm" in answers["scan.pdf"]["error"]
    huge = answers["huge.png"].get("error", "")
    assert "huge.png" in huge and ("too many pixels" in huge or "decompression bomb" in huge)
