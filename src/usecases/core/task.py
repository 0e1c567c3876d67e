"""The use-case plug-in contract. A use case tells the core how to prepare its data, build its
model and loaders, compute its loss and metrics, and predict; the core does the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from usecases.core.config import Config, DataConfig, build_config


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
    def prepare(self, cfg: Config) -> dict[str, Any]:
        """Validate and split the raw data into data/processed/<usecase>; return a summary."""
        raise NotImplementedError

    def build_model(self, cfg: Config, labels: list[str]) -> nn.Module:
        raise NotImplementedError

    def model_meta(self, cfg: Config, labels: list[str]) -> dict[str, Any]:
        """Preprocessing and provenance stored with the weights."""
        raise NotImplementedError

    def build_loaders(self, cfg: Config, meta: dict[str, Any]) -> tuple[Any, Any]:
        """(train, val) loaders."""
        raise NotImplementedError

    def loss_fn(self, cfg: Config):
        raise NotImplementedError

    def eval_fn(self, cfg: Config):
        raise NotImplementedError

    def evaluate(
        self, cfg: Config, model: nn.Module, meta: dict[str, Any], out_dir: Path
    ) -> dict[str, Any]:
        """Score the model on the test split; write plot data into out_dir; return metrics."""
        raise NotImplementedError

    def predict(
        self, model: nn.Module, meta: dict[str, Any], inputs: list[str]
    ) -> list[dict[str, Any]]:
        """One result per input; a bad input gives {"input": ..., "error": "..."}."""
        raise NotImplementedError
