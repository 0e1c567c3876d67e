"""ONNX export: dynamic batch, metadata, and parity with eager PyTorch on the test images."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from usecases.core import stages
from usecases.core.export import ONNX_FILE, export_onnx, onnx_metadata, parity, session
from usecases.core.registry import create_model, get_usecase, list_models


@pytest.mark.parametrize("name", list_models(usecase="crop_disease"))
def test_every_crop_model_exports_with_dynamic_batch(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, image_size=64).eval()
    path = export_onnx(
        model, torch.randn(1, 3, 64, 64), tmp_path / "m.onnx", {"labels": ["a", "b", "c"]}
    )
    assert onnx_metadata(path)["labels"] == ["a", "b", "c"]
    for batch in (1, 3):
        x = torch.randn(batch, 3, 64, 64)
        assert parity(model, path, x) < 1e-4
    assert session(path).get_inputs()[0].shape[0] == "batch"


def test_cli_export_checks_parity_on_real_test_images(smoke_cfg, tiny_project):
    cfg = smoke_cfg()
    stages.prepare(cfg)
    stages.train(cfg)
    folder = stages.model_dir(cfg)
    # The release config names the tiny data set, so the CLI finds its test images.
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "usecases.cli",
            "export",
            "crop_disease",
            str(folder),
            "--check",
            "5",
        ],
        cwd=tiny_project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["parity_images"] == 5 and out["max_abs_diff"] < 1e-4
    model, meta, _ = stages.load_model(folder)
    x = get_usecase("crop_disease").example_inputs(cfg, meta, 5)
    onnx_logits = session(folder / ONNX_FILE).run(None, {"image": x.numpy()})[0]
    assert np.array_equal(onnx_logits.argmax(1), model(x).argmax(1).numpy())
