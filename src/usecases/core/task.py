"""The use-case plug-in contract. A use case tells the core how to prepare its data, build its
model and loaders, compute its loss and metrics, and predict; the core does the rest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import DataLoader, Dataset

from usecases.core import distributed, sources
from usecases.core.config import Config, DataConfig, build_config


def loader_options(cfg: Config) -> dict[str, Any]:
    """DataLoader keywords from the data and trainer configs (workers, pinning, prefetching)."""
    options: dict[str, Any] = {
        "num_workers": cfg.data.num_workers,
        "pin_memory": cfg.trainer.pin_memory,
    }
    if cfg.data.num_workers > 0:
        options["persistent_workers"] = cfg.trainer.persistent_workers
        if cfg.trainer.prefetch_factor > 0:
            options["prefetch_factor"] = cfg.trainer.prefetch_factor
    return options


class UseCase:
    name: str = ""
    data_config: type[DataConfig] = DataConfig
    task: str = ""  # Hugging Face pipeline tag, e.g. "image-classification"
    intended_use: str = ""
    limitations: str = ""

    def config(self, data: dict[str, Any]) -> Config:
        return build_config(data, self.data_config)

    def raw_dir(self, cfg: Config) -> Path:
        return Path(cfg.paths.raw) / self.name

    def processed_dir(self, cfg: Config) -> Path:
        return Path(cfg.paths.processed) / self.name

    # -- plug-in points ---------------------------------------------------------------------
    def fetch(self, cfg: Config, offline: bool = False, force: bool = False) -> Path:
        """Build data/raw/<usecase>: by default from the source archives in `data.sources`
        (offline mirrors first, checksums verified); a use case may generate its data instead."""
        srcs = [sources.Source(**s) for s in cfg.data.sources]
        mirrors = sources.mirror_dirs(cfg.paths.mirror)
        return sources.build_raw(srcs, self.raw_dir(cfg), mirrors, offline=offline, force=force)

    def prepare(self, cfg: Config) -> dict[str, Any]:
        """Validate and split the raw data into data/processed/<usecase>; return a summary."""
        raise NotImplementedError

    def build_model(self, cfg: Config, labels: list[str]) -> nn.Module:
        raise NotImplementedError

    def init_from_data(self, cfg: Config, model: nn.Module, train: Dataset) -> dict[str, Any]:
        """Before the first update of a new run: set what the training data can tell the model
        without gradients (e.g. embeddings from co-occurrence counts); returns facts for the
        log. Default: nothing."""
        return {}

    def fit_heads(self, cfg: Config, model: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
        """After the network is trained: fit what sits on top of it (e.g. a calibrated score,
        a second model over other features, a fusion); the returned entries are stored in the
        release's weight metadata. Default: nothing."""
        return {}

    def model_meta(self, cfg: Config, labels: list[str]) -> dict[str, Any]:
        """Preprocessing and provenance stored with the weights."""
        raise NotImplementedError

    def datasets(self, cfg: Config, meta: dict[str, Any]) -> tuple[Dataset, Dataset]:
        """(train, validation) datasets; the core builds the loaders around them."""
        raise NotImplementedError

    def collate_fn(self, cfg: Config) -> Callable | None:
        """How samples form a batch (e.g. padding variable-length inputs); None = stack."""
        return None

    def train_batch_transform(self, cfg: Config, meta: dict[str, Any]) -> Callable | None:
        """A transform of whole training batches on the training device (e.g. GPU
        augmentation, `usecases.core.gpu_augment`); None = batches go to the model as loaded."""
        return None

    def build_loaders(self, cfg: Config, meta: dict[str, Any]) -> tuple[DataLoader, DataLoader]:
        """(train, val) loaders: a seeded shuffle, or a per-rank share under DDP."""
        train_ds, val_ds = self.datasets(cfg, meta)
        options = loader_options(cfg)
        collate = self.collate_fn(cfg)
        train = distributed.train_loader(
            train_ds,
            batch_size=cfg.data.batch_size,
            strategy=cfg.trainer.strategy,
            seed=cfg.seed,
            collate_fn=collate,
            **options,
        )
        val = DataLoader(val_ds, batch_size=cfg.data.eval_batch_size, collate_fn=collate, **options)
        return train, val

    def loss_fn(self, cfg: Config):
        raise NotImplementedError

    def eval_fn(self, cfg: Config):
        raise NotImplementedError

    def evaluate(
        self, cfg: Config, model: nn.Module, meta: dict[str, Any], out_dir: Path
    ) -> dict[str, Any]:
        """Score the model on the test split; write plot data into out_dir; return metrics."""
        raise NotImplementedError

    def example_inputs(self, cfg: Config, meta: dict[str, Any], n: int) -> Any:
        """Up to `n` preprocessed test inputs as one batch (ONNX parity checks, speed)."""
        raise NotImplementedError

    def card_sections(self, metrics: dict[str, Any]) -> str:
        """Extra model-card markdown (e.g. responsible use, error rates per group)."""
        return ""

    def describe(self, result: dict[str, Any]) -> str:
        """One line of `zoo predict` output for a successful result."""
        return f"{result['input']}\t{result['label']}\t{result['probability']:.4f}"

    def predict(
        self, model: nn.Module, meta: dict[str, Any], inputs: list[str]
    ) -> list[dict[str, Any]]:
        """One result per input; a bad input gives {"input": ..., "error": "..."}."""
        raise NotImplementedError
