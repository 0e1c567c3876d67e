"""The committed DVC setup: a default remote that works offline, and a consistent pipeline."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_server(monkeypatch):
    """moto's S3-compatible server on loopback, with dummy credentials."""
    import socket
    import time

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for var, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "moto server did not start"
            time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_s3_remote_push_wipe_pull(tmp_path, s3_server):
    """The committed `s3` remote against an S3-compatible server: push, wipe, pull, clean."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket="usecase-zoo")
    repo = tmp_path / "repo"
    repo.mkdir()
    sh("git", "init", "-q", cwd=repo)
    sh(DVC, "init", "-q", cwd=repo)
    shutil.copy(REPO / ".dvc/config", repo / ".dvc/config")
    sh(DVC, "remote", "modify", "--local", "s3", "endpointurl", s3_server, cwd=repo)
    (repo / "data/raw").mkdir(parents=True)
    for i in range(3):
        (repo / f"data/raw/leaf{i}.txt").write_text(f"leaf {i}\n")
    sh(DVC, "add", "-q", "data/raw", cwd=repo)
    sh(DVC, "push", "-q", "-r", "s3", cwd=repo)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="usecase-zoo")["Contents"]]
    assert len(keys) == 4 and all(k.startswith("dvcstore/") for k in keys)  # 3 files + .dir
    shutil.rmtree(repo / ".dvc/cache")
    shutil.rmtree(repo / "data/raw")
    sh(DVC, "pull", "-q", "-r", "s3", cwd=repo)
    assert (repo / "data/raw/leaf2.txt").read_text() == "leaf 2\n"
    assert "up to date" in sh(DVC, "status", cwd=repo)
    assert "Cache and remote 's3' are in sync" in sh(DVC, "status", "-c", "-r", "s3", cwd=repo)
