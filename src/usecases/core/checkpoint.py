"""Weights and training checkpoints in safetensors; never pickle.

A training checkpoint is one safetensors file: every tensor of the state (model, optimiser,
scheduler, RNG) under a path-like key, and everything else as JSON in the file's metadata.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from usecases.core.io import atomic_path

_STATE_KEY = "state"
# safetensors stores metadata in a hash map whose order varies between processes: one key
# holding sorted JSON keeps the file byte-identical for equal content.
_META_KEY = "usecase_zoo"


def save_weights(
    state: dict[str, torch.Tensor], path: Path, metadata: dict[str, Any] | None = None
) -> None:
    """Save a state dict (tensors only) with JSON-encoded metadata, atomically."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    meta = {_META_KEY: json.dumps(metadata or {}, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    return load_file(str(path))


def read_metadata(path: Path) -> dict[str, Any]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if _META_KEY not in meta:
        raise ValueError(
            f"{path}: no usecase-zoo metadata (labels, preprocessing) in this weights file"
        )
    return json.loads(meta[_META_KEY])


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors by references into `tensors`; keep dict key types (optimisers use ints)."""
    if isinstance(obj, torch.Tensor):
        key = prefix or "tensor"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _flatten(v, f"{prefix}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return [_flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    return obj


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
        return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": list(random.getstate()[1]) + [random.getstate()[2]],
        "numpy": [np_state[0], np_state[1], *np_state[2:]],
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((3, tuple(py[:-1]), py[-1]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np.asarray(np_state[1], dtype=np.uint32), *np_state[2:]))
    torch.set_rng_state(state["torch"])


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """`state` is a plain dict: model, optimizer, scheduler, epoch, step, rng, config, ..."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, "", tensors)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_STATE_KEY: json.dumps(skeleton)})


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        skeleton = json.loads((f.metadata() or {})[_STATE_KEY])
    return _unflatten(skeleton, tensors)
