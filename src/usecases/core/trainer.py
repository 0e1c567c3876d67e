"""One training loop for every use case.

Reading order: `amp_context`, `Trainer.train_one_epoch`, `Trainer.validate`, `Trainer.fit`.
The use case supplies `loss_fn(model, batch) -> loss` and `eval_fn(model, loader) -> metrics`;
the loop does the rest: epochs or steps, gradient accumulation, autocast, early stopping on a
validation metric, a checkpoint every epoch (resumable), dvclive logging and a progress bar.
Under DDP (`usecases.core.distributed`) every rank runs this loop on its share of each batch;
every rank validates on the whole validation set, so all ranks take the same early-stopping
decisions, and only rank 0 logs and writes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from usecases.core.checkpoint import (
    load_checkpoint,
    load_weights,
    rng_state,
    save_checkpoint,
    save_weights,
    set_rng_state,
)
from usecases.core.config import OptimConfig, TrainerConfig
from usecases.core.distributed import is_main, mean_across_ranks, unwrap

log = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Any], torch.Tensor]
EvalFn = Callable[[nn.Module, Iterable], dict[str, float]]


def seed_everything(seed: int, deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Deterministic mode also fills every new tensor's memory with NaN (a guard against
        # kernels that read memory they did not write). Every op here writes its output, and
        # the fills cost about 5 % of a translation training step (tens of thousands of small
        # allocations per step), so they are left out; the results are the same.
        torch.utils.deterministic.fill_uninitialized_memory = False
        torch.backends.cudnn.benchmark = False


def amp_context(device: str, precision: str) -> contextlib.AbstractContextManager:
    """Autocast for forward + loss; a no-op in fp32."""
    if precision == "32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    if precision == "16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.float16)
    raise ValueError(f"Unknown trainer.precision {precision!r}; expected one of '32', 'bf16', '16'")


def move_to(batch: Any, device: str | torch.device, channels_last: bool = False) -> Any:
    """Tensors of a (nested) batch moved to `device`; 4-D inputs optionally channels_last."""
    if isinstance(batch, torch.Tensor):
        non_blocking = torch.device(device).type == "cuda"
        if channels_last and batch.dim() == 4:
            return batch.to(device, non_blocking=non_blocking, memory_format=torch.channels_last)
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, tuple | list):
        return type(batch)(move_to(b, device, channels_last) for b in batch)
    if isinstance(batch, dict):
        return {k: move_to(v, device, channels_last) for k, v in batch.items()}
    return batch


class OnDevice:
    """A re-iterable view of a loader whose batches arrive on `device`."""

    def __init__(self, loader: Iterable, device: str | torch.device, channels_last: bool) -> None:
        self.loader, self.device, self.channels_last = loader, device, channels_last

    def __iter__(self):
        for batch in self.loader:
            yield move_to(batch, self.device, self.channels_last)

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]


def build_optimizer(params: Iterable[nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    params = list(params)
    if cfg.name == "adamw":
        # optim.fused: a step of the translation default's 139 tensors took 1.8 ms fused against
        # 7.6-9.6 ms in the per-tensor loop here. Other devices and non-float parameters (which
        # the fused kernel does not take) keep the loop.
        fused = cfg.fused and all(
            p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
        )
        return torch.optim.AdamW(
            params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None
        )
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True
        )
    raise ValueError(f"Unknown optim.name {cfg.name!r}; expected one of 'adamw', 'sgd'")


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule: linear warm-up, then cosine to zero (or constant)."""
    warmup = min(cfg.warmup_epochs * steps_per_epoch, max(total_steps - 1, 0))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.scheduler == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    if cfg.scheduler not in ("cosine", "constant"):
        raise ValueError(
            f"Unknown optim.scheduler {cfg.scheduler!r}; expected 'cosine' or 'constant'"
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating-point tensors across `states` (in float32, cast back);
    other tensors (counters, integer buffers) are taken from the newest state."""
    out = {}
    for k, v in states[-1].items():
        if v.is_floating_point():
            mean = torch.stack([s[k].float() for s in states]).mean(0)
            out[k] = mean.to(v.dtype)
        else:
            out[k] = v.clone()
    return out


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps taken
    best: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


class Trainer:
    def __init__(
        self,
        cfg: TrainerConfig,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        loss_fn: LossFn,
        eval_fn: EvalFn,
        run_dir: Path,
        config: dict[str, Any] | None = None,
        device: str | None = None,
        batch_transform: Callable[[Any], Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.device = device or cfg.device
        # Applied to training batches once they are on the device (e.g. GPU augmentation).
        self.batch_transform = batch_transform
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.loss_fn = loss_fn
        self.eval_fn = eval_fn
        self.run_dir = Path(run_dir)
        self.config = config or {}
        self.state = TrainState()
        self.best_state: dict[str, torch.Tensor] | None = None
        self._averaged = max(1, cfg.average_checkpoints)
        self._recent: list[dict[str, torch.Tensor]] = []  # the last epochs' weights, oldest first
        self.is_main = is_main()
        self._live = None
        if cfg.monitor_mode not in ("max", "min"):
            raise ValueError(
                f"Unknown trainer.monitor_mode {cfg.monitor_mode!r}; expected 'max' or 'min'"
            )

    # -- the loop -------------------------------------------------------------------------
    def _done(self) -> bool:
        return 0 <= self.cfg.max_steps <= self.state.step

    def train_one_epoch(self, loader: Iterable) -> float:
        self.model.train()
        # A new order every epoch: DistributedSampler is the loader's `sampler`; a batch sampler
        # with epochs (translation's token batches) is its `batch_sampler`, and the `sampler`
        # beside it is then torch's default sequential one.
        for sampler in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(self.state.epoch)
        amp = amp_context(self.device, self.cfg.precision)
        accum = max(1, self.cfg.grad_accum)
        ddp = isinstance(self.model, nn.parallel.DistributedDataParallel)
        total, count = 0.0, 0
        bar = self._progress(loader, f"epoch {self.state.epoch + 1}")
        self.optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(bar):
            batch = move_to(batch, self.device, self.cfg.channels_last)
            if self.batch_transform is not None:
                batch = self.batch_transform(batch)
            stepping = (i + 1) % accum == 0
            # Accumulation micro-steps skip DDP's gradient all-reduce; the last one syncs.
            sync = contextlib.nullcontext() if stepping or not ddp else self.model.no_sync()
            with sync:
                with amp:
                    loss = self.loss_fn(self.model, batch)
                (loss / accum).backward()
            total += loss.item()
            count += 1
            if stepping:
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                if self.scheduler is not None:
                    self.scheduler.step()
                self.state.step += 1
                if self.state.step % max(1, self.cfg.log_every_n_steps) == 0 and hasattr(
                    bar, "set_postfix"
                ):
                    bar.set_postfix(loss=f"{total / count:.4f}")
                if self._done():
                    break
        return mean_across_ranks(total / max(1, count))

    @torch.no_grad()
    def validate(self, loader: Iterable) -> dict[str, float]:
        # The plain module: every rank scores the whole set, with no collective calls.
        model = unwrap(self.model).eval()
        batches = OnDevice(loader, self.device, self.cfg.channels_last)
        with amp_context(self.device, self.cfg.precision):
            return self.eval_fn(model, batches)

    def fit(self, train_loader: Iterable, val_loader: Iterable, resume: bool = False) -> TrainState:
        if resume:
            self.resume()
        self._open_live()
        try:
            while (
                self.state.epoch < self.cfg.max_epochs
                and not self._done()
                and not self.state.stopped_early
            ):
                start = time.perf_counter()
                train_loss = self.train_one_epoch(train_loader)
                seconds = time.perf_counter() - start
                metrics = self.validate(val_loader)
                self.state.epoch += 1
                self._end_epoch(train_loss, metrics, seconds)
        finally:
            self._close_live()
        if self.best_state is not None:
            unwrap(self.model).load_state_dict(self.best_state)
        return self.state

    def _end_epoch(self, train_loss: float, metrics: dict[str, float], seconds: float) -> None:
        if self.cfg.monitor not in metrics:
            raise KeyError(
                f"trainer.monitor {self.cfg.monitor!r} not among validation metrics {sorted(metrics)}"
            )
        value = float(metrics[self.cfg.monitor])
        row = {
            "epoch": self.state.epoch,
            "step": self.state.step,
            "train_loss": round(train_loss, 6),
            "train_seconds": round(seconds, 3),  # wall time of the epoch's training steps
        }
        row.update(
            {
                f"val_{k}": round(float(v), 6)
                for k, v in metrics.items()
                if isinstance(v, int | float)
            }
        )
        self.state.history.append(row)
        better = (
            self.state.best is None
            or (self.cfg.monitor_mode == "max" and value > self.state.best)
            or (self.cfg.monitor_mode == "min" and value < self.state.best)
        )
        averaging = self._averaged > 1
        current = None
        if better or averaging:
            current = {k: v.detach().clone() for k, v in unwrap(self.model).state_dict().items()}
        if averaging:
            self._recent = [*self._recent, current][-self._averaged :]
            if self.is_main:
                save_weights(current, self._epoch_path(self.state.epoch))
                self._epoch_path(self.state.epoch - self._averaged).unlink(missing_ok=True)
        if better:
            self.state.best, self.state.best_epoch, self.state.bad_epochs = (
                value,
                self.state.epoch,
                0,
            )
            self.best_state = average_states(self._recent) if averaging else current
            if self.is_main:
                save_weights(self.best_state, self.run_dir / "best.safetensors")
        else:
            self.state.bad_epochs += 1
            patience = self.cfg.early_stopping_patience
            if patience > 0 and self.state.bad_epochs >= patience:
                self.state.stopped_early = True
                log.info(
                    "early stopping: no %s improvement for %d epochs", self.cfg.monitor, patience
                )
        log.info(
            "epoch %d step %d train_loss %.4f val_%s %.4f%s",
            self.state.epoch,
            self.state.step,
            train_loss,
            self.cfg.monitor,
            value,
            " *" if better else "",
        )
        self._log_live(row)
        if self.is_main:
            self.save()

    # -- checkpoints ----------------------------------------------------------------------
    def _epoch_path(self, epoch: int) -> Path:
        """One epoch's weights, kept while a checkpoint average needs them."""
        return self.run_dir / f"epoch-{epoch}.safetensors"

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "last.ckpt.safetensors"

    def save(self) -> None:
        save_checkpoint(
            {
                "model": unwrap(self.model).state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "epoch": self.state.epoch,
                "step": self.state.step,
                "scaler": None,  # bf16 needs no loss scaling; kept for a fixed set of keys
                "rng": rng_state(),
                "trainer_state": asdict(self.state),
                "config": self.config,
            },
            self.checkpoint_path,
        )

    def resume(self) -> None:
        if not self.checkpoint_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {self.checkpoint_path}")
        ckpt = load_checkpoint(self.checkpoint_path)
        unwrap(self.model).load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt["scheduler"] is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        self.state = TrainState(**ckpt["trainer_state"])
        best = self.run_dir / "best.safetensors"
        if best.is_file():
            self.best_state = load_weights(best)
        if self._averaged > 1:  # the epochs that the average still needs, from their files
            first = max(1, self.state.epoch - self._averaged + 1)
            paths = [self._epoch_path(e) for e in range(first, self.state.epoch + 1)]
            self._recent = [load_weights(path) for path in paths if path.is_file()]
        log.info(
            "resumed from %s at epoch %d, step %d",
            self.checkpoint_path,
            self.state.epoch,
            self.state.step,
        )

    # -- logging --------------------------------------------------------------------------
    def _progress(self, loader: Iterable, desc: str) -> Iterable:
        if not (self.cfg.progress and self.is_main):
            return loader
        # Plain tqdm, not tqdm.auto: the asyncio variant calls iter() on the loader when it is
        # created, which draws from the sampler's generator and changes the data order.
        from tqdm import tqdm

        return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)

    def _open_live(self) -> None:
        if not self.is_main:
            return
        try:
            from dvclive import Live
        except ImportError:  # dvclive is optional for library users
            return
        try:
            self._live = Live(
                dir=str(self.run_dir / "dvclive"),
                resume=self.state.epoch > 0,
                save_dvc_exp=False,
                dvcyaml=None,
                report=None,
            )
        except Exception as e:  # logging must never stop a training run  # noqa: BLE001
            log.warning("dvclive logging disabled: %s", e)

    def _log_live(self, row: dict[str, float]) -> None:
        if self._live is None:
            return
        for k, v in row.items():
            if k not in ("epoch", "step"):
                self._live.log_metric(k, v)
        self._live.next_step()

    def _close_live(self) -> None:
        if self._live is not None:
            self._live.end()
            self._live = None
