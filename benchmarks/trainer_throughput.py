"""Trainer throughput vs a bare PyTorch loop doing the same work (goal: >= 0.95x).

    .venv/bin/python benchmarks/trainer_throughput.py [--model efficientnet_lite0] [--size 160]

Both loops train the same model on the same in-memory batches (forward, loss, backward, step,
scheduler step); the trainer adds its bookkeeping (autocast context, logging, checkpoint at the
end of the epoch). Prints images/s for each and the ratio, best of --repeats.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from usecases.core.config import OptimConfig, TrainerConfig
from usecases.core.registry import create_model
from usecases.core.trainer import Trainer, build_optimizer, build_scheduler


def batches(n: int, bs: int, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(bs, 3, size, size, generator=g), torch.randint(0, 3, (bs,), generator=g))
        for _ in range(n)
    ]


def loss_fn(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


def setup(name: str, size: int, steps: int):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, image_size=size)
    opt = build_optimizer(model.parameters(), OptimConfig(lr=1e-3))
    sched = build_scheduler(opt, OptimConfig(lr=1e-3), total_steps=steps, steps_per_epoch=steps)
    return model, opt, sched


def bare(name: str, data, size: int) -> float:
    model, opt, sched = setup(name, size, len(data))
    model.train()
    t = time.perf_counter()
    for x, y in data:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
    return len(data) * len(data[0][1]) / (time.perf_counter() - t)


def trainer(name: str, data, size: int) -> float:
    model, opt, sched = setup(name, size, len(data))
    cfg = TrainerConfig(max_epochs=1, progress=False, log_every_n_steps=10)
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer(cfg, model, opt, sched, loss_fn, lambda m, loader: {"accuracy": 0.0}, Path(d))
        t = time.perf_counter()
        tr.fit(data, [])
        return len(data) * len(data[0][1]) / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    data = batches(a.steps, a.batch, a.size)
    bare_best = max(bare(a.model, data, a.size) for _ in range(a.repeats))
    trainer_best = max(trainer(a.model, data, a.size) for _ in range(a.repeats))
    print(
        "| model | size | batch | steps | bare loop (img/s) | Trainer (img/s) | ratio | threads |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {a.model} | {a.size} | {a.batch} | {a.steps} | {bare_best:.1f} | {trainer_best:.1f} "
        f"| {trainer_best / bare_best:.3f} | {torch.get_num_threads()} |"
    )


if __name__ == "__main__":
    main()
