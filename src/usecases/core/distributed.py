"""Data-parallel training on torch.distributed: one process per device, started by `torchrun`.

`torchrun` sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; `setup` reads them and
joins the process group (NCCL on CUDA, gloo on CPU). Without them (a plain `zoo train`) the same
code runs as a world of one, so `trainer=ddp` is also a valid single-process configuration.

`data.batch_size` stays the *global* batch: each of W ranks takes batch_size / W samples, and
`DistributedSampler` gives rank r the samples perm[r::W] of one seeded permutation per epoch. A
step therefore sees the same samples whatever W is, and DDP's gradient averaging makes the update
equal to the single-process one (for models without batch statistics, or with SyncBatchNorm on
GPUs; on CPU BatchNorm statistics stay per rank).
"""

from __future__ import annotations

import datetime
import logging
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

log = logging.getLogger(__name__)

STRATEGIES = ("single", "ddp")


def world_size() -> int:
    return (
        dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", "1"))
    )


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown trainer.strategy {strategy!r}; expected one of {STRATEGIES}")


def setup(strategy: str, device: str, backend: str = "auto") -> str:
    """Join the process group when launched by torchrun; return the device this rank uses."""
    check_strategy(strategy)
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if strategy == "single":
        if launched:
            raise ValueError(
                "launched by torchrun with WORLD_SIZE > 1 but trainer.strategy is 'single'; "
                "add `trainer=ddp` to the command"
            )
        return device
    on_cuda = torch.device(device).type == "cuda"
    if on_cuda:
        if not torch.cuda.is_available():
            raise RuntimeError("trainer.device is 'cuda' but no CUDA device is visible")
        device = f"cuda:{local_rank()}"
        torch.cuda.set_device(device)
    if launched and not dist.is_initialized():
        if backend == "auto":
            backend = "nccl" if on_cuda else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
        log.info("rank %d/%d joined the %s process group", rank(), world_size(), backend)
    return device


def teardown() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def wrap(model: nn.Module, device: str, sync_batchnorm: bool = False) -> nn.Module:
    """DistributedDataParallel around `model` when the world has more than one rank."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return model
    if sync_batchnorm:
        if torch.device(device).type != "cuda":
            raise ValueError("trainer.sync_batchnorm needs CUDA devices (torch has no CPU kernel)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [torch.device(device).index] if torch.device(device).type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers (what checkpoints store)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def mean_across_ranks(value: float) -> float:
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def train_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    strategy: str,
    seed: int,
    collate_fn=None,
    **options: Any,
) -> DataLoader:
    """The training loader: a seeded shuffle; under `ddp`, a per-rank share of the global batch."""
    check_strategy(strategy)
    # One seeded generator for the shuffle and for the loader's worker base seed, so neither
    # draws from (and shifts) the global RNG that augmentations use.
    g = torch.Generator().manual_seed(seed)
    if strategy == "ddp":
        world = world_size()
        if batch_size % world:
            raise ValueError(
                f"data.batch_size {batch_size} is the global batch and must divide by the "
                f"{world} ranks"
            )
        sampler = DistributedSampler(
            dataset, num_replicas=world, rank=rank(), shuffle=True, seed=seed, drop_last=True
        )
        batch_size //= world
    else:
        sampler = RandomSampler(dataset, generator=g)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        collate_fn=collate_fn,
        generator=g,
        **options,
    )
    if len(loader) == 0:
        raise ValueError(
            f"data.batch_size {batch_size * world_size() if strategy == 'ddp' else batch_size} "
            f"exceeds the {len(dataset)} training items"
        )
    return loader
