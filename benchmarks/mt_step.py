"""How fast a training step of the translation default runs, each change beside the path it
replaced.

    .venv/bin/python benchmarks/mt_step.py [--steps 30] [--rounds 3]

The released default (`models/translation/pre_nano`: its weights, lexicon tables and copy
flags, so the priors cost what they cost in training) takes the same ~2,000-token batches of the
prepared corpus (forward under bf16 autocast, the use case's loss, backward, AdamW) on three
paths, taking turns for `--rounds` rounds so that a slower minute of a shared machine falls on
all of them:

- separate operations: the output layer, the cast to float32, the priors' bias and
  `F.cross_entropy` as four operations (`labelled_logits`), AdamW's per-tensor loop;
- chunked loss: `losses.output_cross_entropy` (output layer and loss in row chunks, the
  gradients in the same pass), AdamW's per-tensor loop;
- chunked loss + fused AdamW (`optim.fused`): what the default trains with.

Each path starts from the same weights and optimizer state. Prints seconds per step (best and
mean) and the loss after the last step: the paths compute the same loss, so the losses differ
only by bf16 rounding.

Needs the prepared corpus and the released default (`dvc repro report@3` or `make repro`).
"""

from __future__ import annotations

import argparse
import copy
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from mt_budget import load_release, print_table, timed_steps
from usecases.core.trainer import build_optimizer
from usecases.translation.batching import IGNORE
from usecases.translation.task import labelled_logits

RELEASE = Path("models/translation/pre_nano")
PATHS = ("separate operations", "chunked loss", "chunked loss + fused AdamW")


def separate_loss(smoothing: float):
    """The loss as it was computed before `losses.output_cross_entropy`."""

    def loss(model, batch):
        logits, labels = labelled_logits(model, batch, batch["decoder_input_ids"])
        return F.cross_entropy(logits, labels, ignore_index=IGNORE, label_smoothing=smoothing)

    return loss


def step_seconds(model, cfg, loss_fn, fused: bool, batches) -> tuple[float, float]:
    """(seconds per step after 3 warm-up steps, last loss) of a copy of `model`."""
    model = copy.deepcopy(model).train()
    optim = copy.deepcopy(cfg.optim)
    optim.fused = fused
    opt = build_optimizer(model.parameters(), optim)
    return timed_steps(model, opt, loss_fn, batches, cfg.trainer.precision)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=30, help="timed training steps per path")
    p.add_argument("--rounds", type=int, default=3, help="turns each path takes")
    args = p.parse_args()
    uc, cfg, model, meta = load_release(RELEASE)
    loader, _ = uc.build_loaders(cfg, meta)
    loader.batch_sampler.set_epoch(0)
    stream = iter(loader)
    batches = [next(stream) for _ in range(args.steps + 3)]
    chunked = uc.loss_fn(cfg)
    paths = {
        PATHS[0]: (separate_loss(cfg.optim.label_smoothing), False),
        PATHS[1]: (chunked, False),
        PATHS[2]: (chunked, True),
    }
    seconds: dict[str, list[float]] = {name: [] for name in PATHS}
    losses: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, (loss_fn, fused) in paths.items():
            s, losses[name] = step_seconds(model, cfg, loss_fn, fused, batches)
            seconds[name].append(s)
    labelled = sum(int((b["labels"] != IGNORE).sum()) for b in batches) / len(batches)
    print(
        f"\n{args.steps} training steps of the released default ({labelled:.0f} labelled "
        f"target positions per batch on average; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {cfg.trainer.precision}), best / mean of "
        f"{args.rounds} rounds\n"
    )
    print_table(
        ("path", "s/step (best)", "s/step (mean)", "last loss"),
        [
            (
                name,
                f"{min(seconds[name]):.3f}",
                f"{statistics.mean(seconds[name]):.3f}",
                f"{losses[name]:.4f}",
            )
            for name in PATHS
        ],
    )


if __name__ == "__main__":
    main()
