"""prepare -> train (2 steps) -> evaluate -> report on a tiny data set written by the test."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from usecases.core import stages

from .conftest import REPO, leaf_image, run_zoo, smoke_overrides


@pytest.fixture
def trained(smoke_cfg):
    cfg = smoke_cfg()
    stages.prepare(cfg)
    stages.train(cfg)
    stages.evaluate(cfg)
    return cfg


def test_release_folder_is_complete(trained):
    out = stages.model_dir(trained)
    for f in (
        "weights.safetensors",
        "config.yaml",
        "metrics.json",
        "model_card.md",
        "history.csv",
        "confusion.csv",
        "speed.json",
    ):
        assert (out / f).is_file(), f
    speed = json.loads((out / "speed.json").read_text())
    assert speed["throughput_batch"] == 9  # every test image, as one batch
    assert speed["throughput_items_per_s"] > 0
    assert speed["latency_ms_batch1_1thread"]["optimised"] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n"] == 9
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert set(metrics["per_class"]) == {"angular_leaf_spot", "bean_rust", "healthy"}
    card = (out / "model_card.md").read_text()
    assert card.startswith("---\nlicense: mit\n")
    for needle in (
        "pipeline_tag: image-classification",
        "## Intended use",
        "## Limitations",
        "code commit",
        "torch ",
        "## Speed",
        "items/s on `cpu`",
        "CPU latency, batch 1, 1 thread",
    ):
        assert needle in card


def test_report_and_index(trained):
    html = stages.report(trained)
    text = html.read_text()
    assert "Confusion matrix" in text and "Quarantined files" in text and "Misclassified" in text
    assert "Traceback" not in text
    index = stages.index(Path(trained.paths.reports), Path(trained.paths.models))
    assert "crop_disease/efficientnet_lite0.html" in index.read_text()


def test_two_runs_with_one_seed_give_identical_bytes(smoke_cfg, tmp_path):
    outputs = []
    for run in ("a", "b"):
        cfg = smoke_cfg(f"paths.models={tmp_path / run}", f"paths.runs={tmp_path / run / 'runs'}")
        stages.prepare(cfg)
        stages.train(cfg)
        stages.evaluate(cfg)
        d = stages.model_dir(cfg)
        outputs.append(
            ((d / "metrics.json").read_bytes(), (d / "weights.safetensors").read_bytes())
        )
    assert outputs[0] == outputs[1]


def test_cli_predict_answers_good_files_and_names_bad_ones(trained, tiny_project):
    good = tiny_project / "leaf.jpg"
    leaf_image("healthy", 99).save(good)
    bad = tiny_project / "notes.jpg"
    bad.write_text("not an image")
    model = stages.model_dir(trained)
    r = run_zoo(
        "predict",
        "crop_disease",
        str(good),
        str(bad),
        "--model",
        str(model),
        "--json",
        cwd=tiny_project,
    )
    assert r.returncode == 1
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines[0]["input"] == str(good) and lines[0]["label"] in {
        "angular_leaf_spot",
        "bean_rust",
        "healthy",
    }
    assert abs(sum(lines[0]["probabilities"].values()) - 1) < 1e-4
    assert "notes.jpg: not an image" in r.stderr and "Traceback" not in r.stderr
    plain = run_zoo("predict", "crop_disease", str(good), "--model", str(model), cwd=tiny_project)
    assert plain.returncode == 0 and plain.stdout.startswith(str(good) + "\t")


def test_cli_list_shows_the_zoo(trained, tiny_project):
    r = run_zoo("list", "--models", trained.paths.models, cwd=tiny_project)
    assert r.returncode == 0, r.stderr
    assert "efficientnet_lite0" in r.stdout and "accuracy" in r.stdout and "CPU latency" in r.stdout
    row = next(line for line in r.stdout.splitlines() if line.startswith("efficientnet_lite0"))
    assert row.split()[-1] != "-"  # throughput from speed.json


def test_cli_train_resume_and_errors(tiny_project):
    over = smoke_overrides(tiny_project)
    assert run_zoo("prepare", "crop_disease", *over, cwd=tiny_project).returncode == 0
    r = run_zoo("train", "crop_disease", *over, "trainer.max_stepz=1", cwd=tiny_project)
    assert r.returncode == 2 and "trainer.max_stepz" in r.stderr and "Traceback" not in r.stderr
    r = run_zoo("train", "crop_disease", *over, "--resume", cwd=tiny_project)
    assert r.returncode == 2 and "no checkpoint" in r.stderr
    assert (
        run_zoo(
            "train",
            "crop_disease",
            *over,
            "trainer.max_steps=1",
            "trainer.max_epochs=3",
            cwd=tiny_project,
        ).returncode
        == 0
    )
    r = run_zoo(
        "train",
        "crop_disease",
        *over,
        "trainer.max_steps=2",
        "trainer.max_epochs=3",
        "--resume",
        cwd=tiny_project,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["steps"] == 2
    r = run_zoo("evaluate", "crop_disease", *over, cwd=tiny_project)
    assert r.returncode == 0, r.stderr
    card = next(tiny_project.glob("models/crop_disease/*/model_card.md")).read_text()
    section = card[card.index("## Reproduce") :]
    for cmd in ("prepare", "train", "evaluate", "report"):
        assert f"zoo {cmd} crop_disease " in section
    assert all(o in section for o in over)


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run_zoo("prepare", "crop_disease", *smoke_overrides(tmp_path), cwd=tmp_path)
    assert r.returncode == 2 and "raw data folder not found" in r.stderr


def test_zoo_help_and_dvc_dag():
    assert run_zoo("--help", cwd=REPO).returncode == 0
    dvc = Path(sys.executable).with_name("dvc")
    r = subprocess.run([str(dvc), "dag"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for stage in ("prepare@crop_disease", "train@0", "evaluate@0", "report@0", "index"):
        assert stage in r.stdout
