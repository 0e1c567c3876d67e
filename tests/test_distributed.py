"""DDP on CPU (gloo) under torchrun: same result as one process, rank 0 writes, resume works,
and a two-"node" rendezvous on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from usecases.cli import main as zoo
from usecases.core.checkpoint import load_checkpoint

from .conftest import smoke_overrides

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
# A model without batch statistics, no augmentation and a constant LR: then a step over the
# global batch is the same computation however it is split across ranks.
COMMON = [
    "trainer=ddp",
    "model=tinycnn",
    "model.image_size=64",
    "data.augment=false",
    "data.batch_size=8",
    "data.limit_per_class=null",
    "trainer.max_steps=-1",
    "optim.scheduler=constant",
    "optim.warmup_epochs=0",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _outputs(root: Path, tag: str) -> list[str]:
    return [f"paths.models={root / tag / 'models'}", f"paths.runs={root / tag / 'runs'}"]


def _torchrun(launch: list[str], args: list[str], **kw) -> subprocess.Popen:
    cmd = TORCHRUN + launch + ["-m", "usecases.cli", "train", "crop_disease", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **kw
    )


def _wait(*procs: subprocess.Popen) -> None:
    for p in procs:
        out, _ = p.communicate(timeout=240)
        assert p.returncode == 0, out[-3000:]


def _model_tensors(root: Path, tag: str) -> dict[str, torch.Tensor]:
    return load_checkpoint(root / tag / "runs/crop_disease/tinycnn/last.ckpt.safetensors")["model"]


def _files(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and "dvclive" not in p.parts
    )


def _assert_same_weights(a: dict, b: dict, tol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert diff < tol, f"max |diff| {diff}"


@pytest.fixture
def prepared(tiny_project: Path) -> list[str]:
    base = smoke_overrides(tiny_project)
    assert zoo(["prepare", "crop_disease", *base]) == 0
    return base + COMMON


def test_ddp_matches_one_process_and_resumes(prepared, tiny_project):
    root = tiny_project
    two_epochs = ["trainer.max_epochs=2"]
    # Reference: the same global batch on one process.
    assert zoo(["train", "crop_disease", *prepared, *two_epochs, *_outputs(root, "single")]) == 0
    launch = ["--standalone", "--nproc_per_node=2"]
    _wait(_torchrun(launch, prepared + two_epochs + _outputs(root, "ddp")))
    single, ddp = _model_tensors(root, "single"), _model_tensors(root, "ddp")
    _assert_same_weights(single, ddp)
    # Rank 0 alone writes: the DDP run leaves exactly the files of the single-process run.
    assert _files(root / "ddp") == _files(root / "single")
    history = (root / "ddp/models/crop_disease/tinycnn/history.csv").read_text()
    assert history.count("\n") == 3  # header + one row per epoch, written once
    ckpts = [
        load_checkpoint(root / t / "runs/crop_disease/tinycnn/last.ckpt.safetensors")
        for t in ("single", "ddp")
    ]
    assert [(c["epoch"], c["step"]) for c in ckpts] == [(2, ckpts[0]["step"])] * 2

    # Resume under DDP: one epoch, then --resume up to two, equals two epochs straight.
    out = _outputs(root, "resumed")
    _wait(_torchrun(launch, [*prepared, "trainer.max_epochs=1", *out]))
    proc = _torchrun(launch, [*prepared, "trainer.max_epochs=2", *out, "--resume"])
    _wait(proc)
    _assert_same_weights(_model_tensors(root, "resumed"), ddp, tol=1e-6)


def test_two_nodes_rendezvous_on_loopback(prepared, tiny_project):
    """Two torchrun agents (one process each) meet through the c10d rendezvous, as two nodes do."""
    root = tiny_project
    args = [*prepared, "trainer.max_epochs=1"]
    launch = [
        "--nnodes=2",
        "--nproc_per_node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{_free_port()}",
        "--rdzv-id=zoo-test",
    ]
    nodes = [_torchrun(launch, args + _outputs(root, "nodes")) for _ in range(2)]
    _wait(*nodes)
    assert zoo(["train", "crop_disease", *args, *_outputs(root, "single")]) == 0
    _assert_same_weights(_model_tensors(root, "nodes"), _model_tensors(root, "single"))


def test_only_rank_zero_writes(prepared, tiny_project, monkeypatch):
    """A non-zero rank trains but writes no checkpoint, log or release."""
    monkeypatch.setenv("RANK", "1")
    from usecases.core import stages
    from usecases.core.config import compose
    from usecases.core.registry import get_usecase

    data = compose(
        [*prepared, "trainer.strategy=single", *_outputs(tiny_project, "r1")], "crop_disease"
    )
    result = stages.train(get_usecase("crop_disease").config(data))
    assert result["steps"] > 0
    assert not (tiny_project / "r1").exists()


def test_ddp_config_errors(prepared, tiny_project):
    assert zoo(["train", "crop_disease", *prepared, "trainer.strategy=horovod"]) == 2
    # Launched as a world of two with strategy 'single': refused, with the fix in the message.
    env = dict(os.environ, WORLD_SIZE="2", RANK="0")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "usecases.cli",
            "train",
            "crop_disease",
            *prepared,
            "trainer.strategy=single",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2
    assert "trainer=ddp" in proc.stderr
