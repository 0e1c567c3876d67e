"""The committed DVC setup: a default remote that works offline, and a consistent pipeline."""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import REPO

DVC = str(Path(sys.executable).with_name("dvc"))


def sh(*args: str, cwd: Path) -> str:
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{args}: {r.stdout}{r.stderr}"
    return r.stdout


def test_default_remote_push_wipe_pull(tmp_path):
    """The repository's .dvc/config, in a scratch repo: push, wipe the cache, pull, status clean."""
    repo = tmp_path / "repo"
    repo.mkdir()
    sh("git", "init", "-q", cwd=repo)
    sh(DVC, "init", "-q", cwd=repo)
    shutil.copy(REPO / ".dvc/config", repo / ".dvc/config")
    (repo / "data").mkdir()
    (repo / "data/x.txt").write_text("leaf\n")
    sh(DVC, "add", "-q", "data/x.txt", cwd=repo)
    sh(DVC, "push", "-q", cwd=repo)
    assert any((repo / ".dvcstore").rglob("*")), "the default remote is the in-checkout .dvcstore/"
    shutil.rmtree(repo / ".dvc/cache")
    (repo / "data/x.txt").unlink()
    sh(DVC, "pull", "-q", cwd=repo)
    assert (repo / "data/x.txt").read_text() == "leaf\n"
    assert "up to date" in sh(DVC, "status", cwd=repo)


def test_remote_folder_and_data_are_git_ignored():
    for path in (
        ".dvcstore/x",
        "data/raw/x",
        ".venv/x",
        "runs/x",
        "models/a/b/weights.safetensors",
    ):
        r = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
        assert r.returncode == 0, f"{path} must be git-ignored"


def test_every_pipeline_run_has_params_and_a_use_case():
    pipeline = yaml.safe_load((REPO / "configs/pipeline.yaml").read_text())
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for run in pipeline["runs"]:
        assert run["usecase"] in pipeline["usecases"]
        assert params[run["usecase"]][run["name"]]["name"] == run["name"]
    data = yaml.safe_load((REPO / "data.dvc").read_text())
    assert data["outs"][0]["path"] == "data/raw"
