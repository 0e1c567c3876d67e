"""Registries of use cases and models, in the manner of timm's `register_model`.

@register_model(usecase="crop_disease")
def resnet18(pretrained=False, **kwargs): ...

create_model("resnet18", num_classes=3)
list_models("crop_*")  # by name pattern, or list_models(usecase="crop_disease")
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    usecase: str
    fn: Callable[..., Any]
    # Preprocessing and provenance that travel with the weights (input size, mean/std, licence...).
    meta: dict[str, Any] = field(default_factory=dict)


_MODELS: dict[str, ModelEntry] = {}
_USECASES: dict[str, type] = {}
_loaded = False


def _ensure_loaded() -> None:
    """Import every shipped use case once, so that their decorators run."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from usecases import USECASES

    for name in USECASES:
        importlib.import_module(f"usecases.{name}.task")


def _unknown(kind: str, name: str, known: list[str]) -> KeyError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return KeyError(f"Unknown {kind} {name!r}{hint} Known: {', '.join(sorted(known)) or 'none'}.")


def register_model(usecase: str, **meta: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a model entry point under its function name."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        name = fn.__name__
        if name in _MODELS:
            warnings.warn(f"Model {name!r} registered twice; the later one wins.", stacklevel=2)
        _MODELS[name] = ModelEntry(name=name, usecase=usecase, fn=fn, meta=dict(meta))
        return fn

    return wrap


def register_usecase(name: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        if name in _USECASES:
            warnings.warn(f"Use case {name!r} registered twice; the later one wins.", stacklevel=2)
        cls.name = name
        _USECASES[name] = cls
        return cls

    return wrap


def list_models(pattern: str = "*", usecase: str | None = None) -> list[str]:
    _ensure_loaded()
    return sorted(
        n
        for n, e in _MODELS.items()
        if fnmatch.fnmatch(n, pattern) and (usecase is None or e.usecase == usecase)
    )


def model_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in _MODELS:
        raise _unknown("model", name, list(_MODELS))
    return _MODELS[name]


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> Any:
    """Build a registered model; `pretrained` and keyword arguments go to its entry point."""
    return model_entry(name).fn(pretrained=pretrained, **kwargs)


def list_usecases() -> list[str]:
    _ensure_loaded()
    return sorted(_USECASES)


def get_usecase(name: str) -> Any:
    """Return an instance of the registered use case `name`."""
    _ensure_loaded()
    if name not in _USECASES:
        raise _unknown("use case", name, list(_USECASES))
    return _USECASES[name]()
