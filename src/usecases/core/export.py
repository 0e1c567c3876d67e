"""ONNX export with a dynamic batch dimension, and the parity check against eager PyTorch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from usecases.core.io import atomic_path

ONNX_FILE = "model.onnx"


def export_onnx(
    model: torch.nn.Module, example: torch.Tensor, path: Path, meta: dict[str, Any]
) -> Path:
    """Export `model` (eval mode) to `path`: input `image` [batch, ...], output `logits`.

    The release metadata (labels, input size, mean/std) is stored in the ONNX metadata_props,
    so a runtime without this package can preprocess and label correctly.
    """
    import onnx

    model = model.eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    with atomic_path(path) as tmp:
        program = torch.onnx.export(
            model,
            (example,),
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes=({0: batch},),
            dynamo=True,
            optimize=True,
            verbose=False,
        )
        proto = program.model_proto
        for key, value in sorted(meta.items()):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, json.dumps(value, sort_keys=True)
        onnx.save(proto, str(tmp))
        onnx.checker.check_model(str(tmp))
    return path


def session(path: Path, threads: int = 0):
    """An ONNX Runtime CPU session; threads=0 lets it use every core."""
    import onnxruntime as ort

    if hasattr(ort, "disable_telemetry_events"):
        ort.disable_telemetry_events()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_metadata(path: Path) -> dict[str, Any]:
    props = session(path).get_modelmeta().custom_metadata_map
    return {k: json.loads(v) for k, v in props.items()}


@torch.no_grad()
def parity(model: torch.nn.Module, path: Path, inputs: torch.Tensor) -> float:
    """Max |ONNX Runtime - eager| over `inputs`, run as one batch."""
    ref = model.eval()(inputs).float().numpy()
    out = session(path).run(None, {"image": inputs.numpy()})[0]
    if out.shape != ref.shape:
        raise ValueError(f"{path}: output shape {out.shape} differs from eager {ref.shape}")
    return float(np.abs(out - ref).max())
