"""Configuration: Hydra composes at the CLI edge; the library receives typed dataclasses.

`compose()` returns a plain dict; `build_config()` checks it against the dataclasses below (and
the use case's own data section), naming any unknown or mistyped field.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config value is missing, unknown or of the wrong type."""


@dataclass
class PathsConfig:
    raw: str = "data/raw"
    processed: str = "data/processed"
    models: str = "models"
    reports: str = "reports"
    runs: str = "runs"
    mirror: str | None = None


@dataclass
class DataConfig:
    """Settings every use case has; a use case subclasses it for its own fields."""

    sources: list[dict] = field(default_factory=list)
    val_fraction: float = 0.1
    test_fraction: float = 0.0  # only used when the source has no published test split
    batch_size: int = 32
    eval_batch_size: int = 64
    num_workers: int = 0
    limit_per_class: int | None = None  # keep at most N items per class and split (smoke runs)
    dataset_name: str = ""
    licence: str = ""
    citation: str = ""


@dataclass
class ModelConfig:
    name: str = ""
    pretrained: bool = False
    weights: str | None = None
    image_size: int = 224
    dropout: float = 0.0


@dataclass
class OptimConfig:
    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    label_smoothing: float = 0.0
    scheduler: str = "cosine"
    warmup_epochs: int = 0
    # AdamW as torch's fused kernel (one kernel for every tensor, CPU and CUDA): the same
    # update up to rounding, several times faster for models of many small tensors. Off by
    # default so that the releases trained with the per-tensor loop retrain as they were.
    fused: bool = False


@dataclass
class TrainerConfig:
    device: str = "cpu"
    precision: str = "32"
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = True
    threads: int = 0
    max_epochs: int = 10
    max_steps: int = -1
    grad_accum: int = 1
    early_stopping_patience: int = 0
    # Keep the mean of the last N epochs' weights (N = 0 or 1: the epoch's own weights) as the
    # best model: checkpoint averaging, judged by the newest epoch's validation metric.
    average_checkpoints: int = 0
    monitor: str = "accuracy"
    monitor_mode: str = "max"
    log_every_n_steps: int = 10
    progress: bool = True
    strategy: str = "single"  # "single" or "ddp" (under torchrun)
    backend: str = "auto"  # torch.distributed backend: auto = nccl on CUDA, gloo on CPU
    sync_batchnorm: bool = False  # DDP on CUDA: BatchNorm statistics over the global batch
    pin_memory: bool = False
    persistent_workers: bool = False  # only with data.num_workers > 0
    prefetch_factor: int = 0  # batches each worker keeps ready; 0 = torch's default


@dataclass
class Config:
    usecase: str
    name: str = ""  # release name: models/<usecase>/<name>/; defaults to the model name
    seed: int = 42
    profile: str = "default"
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_type(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return list(value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(
    cls: type, data: dict[str, Any], where: str = "", overrides: dict[str, type] | None = None
) -> Any:
    """Build dataclass `cls` from `data`, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {where + '.' if where else ''}{close[0]}?)" if close else ""
            raise ConfigError(f"Unknown config field {path!r}{hint}")
        tp = (overrides or {}).get(key, hints[key])
        if dataclasses.is_dataclass(tp):
            kwargs[key] = from_dict(tp, value or {}, path)
        else:
            kwargs[key] = _check_type(value, tp, path)
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(
            f"Missing config field(s): {', '.join(f'{where}.{m}'.lstrip('.') for m in missing)}"
        )
    return cls(**kwargs)


def build_config(data: dict[str, Any], data_cls: type = DataConfig) -> Config:
    """Typed config from a composed dict; `data_cls` is the use case's DataConfig subclass."""
    return from_dict(Config, data, overrides={"data": data_cls})


def config_dir() -> Path:
    """`$ZOO_CONFIG_DIR`, else ./configs, else the repository's configs/ beside src/."""
    env = os.environ.get("ZOO_CONFIG_DIR")
    if env:
        return Path(env).resolve()
    local = Path.cwd() / "configs"
    if (local / "config.yaml").is_file():
        return local.resolve()
    return (Path(__file__).resolve().parents[3] / "configs").resolve()


def repo_root() -> Path:
    """The folder holding configs/ and notebooks/."""
    return config_dir().parent


def compose(overrides: list[str] | None = None, usecase: str | None = None) -> dict[str, Any]:
    """Compose configs/config.yaml with Hydra overrides (e.g. ["model=resnet18"])."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides or [])
    if usecase:
        overrides.insert(0, f"usecase={usecase}")
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=overrides)
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(f"Cannot compose config with overrides {overrides}: {e}") from e


def load_pipeline() -> dict[str, Any]:
    from usecases.core.io import read_yaml

    return read_yaml(config_dir() / "pipeline.yaml")


def compose_params() -> dict[str, Any]:
    """The content of params.yaml: every pipeline run composed, keyed <usecase>.<name>."""
    out: dict[str, Any] = {}
    for run in load_pipeline()["runs"]:
        cfg = compose(run.get("overrides", []), usecase=run["usecase"])
        if cfg["name"] != run["name"]:
            raise ConfigError(f"configs/pipeline.yaml: run {run} composes name {cfg['name']!r}")
        out.setdefault(run["usecase"], {})[run["name"]] = cfg
    return out


def lookup(tree: dict[str, Any], dotted: str, source: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{source}: no key {dotted!r}")
        node = node[part]
    return node
