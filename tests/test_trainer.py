"""The training loop: autocast context, one optimiser step per step, early stopping, resume."""

import contextlib

import pytest
import torch
from torch import nn

from usecases.core.checkpoint import load_checkpoint, load_weights, save_checkpoint
from usecases.core.config import OptimConfig, TrainerConfig
from usecases.core.trainer import (
    Trainer,
    amp_context,
    average_states,
    build_optimizer,
    build_scheduler,
    seed_everything,
)


def toy_data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return [(x[i : i + 8], y[i : i + 8]) for i in range(0, n, 8)]


def loss_fn(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def eval_fn(model, loader):
    correct = sum((model(x).argmax(1) == y).sum().item() for x, y in loader)
    return {"accuracy": correct / sum(len(y) for _, y in loader)}


def make_trainer(tmp_path, **over):
    seed_everything(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    cfg = TrainerConfig(**{"progress": False, **over})
    opt = build_optimizer(model.parameters(), OptimConfig(lr=0.05))
    sched = build_scheduler(
        opt, OptimConfig(lr=0.05), total_steps=cfg.max_epochs * 4, steps_per_epoch=4
    )
    return Trainer(cfg, model, opt, sched, loss_fn, eval_fn, tmp_path)


def test_fused_adamw_is_opt_in_and_makes_the_same_updates():
    seed_everything(0)
    models = [nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    start = models[1][0].weight.detach().clone()
    opts = [
        build_optimizer(m.parameters(), OptimConfig(lr=0.05, weight_decay=0.01, fused=f))
        for m, f in zip(models, (False, True), strict=True)
    ]
    assert [o.defaults["fused"] for o in opts] == [None, True]
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    for _ in range(5):
        for m, o in zip(models, opts, strict=True):
            o.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            o.step()
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(models[1][0].weight, start)  # the fused optimizer did step


def test_amp_context_is_a_noop_in_fp32_and_rejects_unknown():
    assert isinstance(amp_context("cpu", "32"), contextlib.nullcontext)
    assert isinstance(amp_context("cpu", "bf16"), torch.autocast)
    with pytest.raises(ValueError, match="Unknown trainer.precision 'fp8'"):
        amp_context("cpu", "fp8")


def test_optimizer_steps_exactly_once_per_step(tmp_path):
    t = make_trainer(tmp_path, max_epochs=2, grad_accum=2)
    calls = []
    original = t.optimizer.step
    t.optimizer.step = lambda *a, **k: (calls.append(1), original(*a, **k))[1]
    t.fit(toy_data(), toy_data(seed=1))
    assert len(calls) == t.state.step == 2 * 4 // 2


def test_max_steps_stops_mid_epoch(tmp_path):
    t = make_trainer(tmp_path, max_epochs=5, max_steps=3)
    state = t.fit(toy_data(), toy_data(seed=1))
    assert state.step == 3 and state.epoch == 1


def test_training_learns_and_keeps_best_weights(tmp_path):
    t = make_trainer(tmp_path, max_epochs=6)
    state = t.fit(toy_data(64), toy_data(seed=1))
    assert state.best >= 0.75
    assert (tmp_path / "best.safetensors").is_file() and (
        tmp_path / "last.ckpt.safetensors"
    ).is_file()


def test_early_stopping(tmp_path):
    t = make_trainer(tmp_path, max_epochs=50, early_stopping_patience=2)
    t.eval_fn = lambda model, loader: {"accuracy": 0.5}  # never improves
    state = t.fit(toy_data(), toy_data(seed=1))
    assert state.stopped_early and state.epoch == 3


def test_unknown_monitor_is_named(tmp_path):
    t = make_trainer(tmp_path, max_epochs=1, monitor="f1")
    with pytest.raises(KeyError, match="trainer.monitor 'f1'"):
        t.fit(toy_data(), toy_data(seed=1))


def test_resume_matches_an_uninterrupted_run(tmp_path):
    full = make_trainer(tmp_path / "full", max_epochs=4)
    full.fit(toy_data(), toy_data(seed=1))
    first = make_trainer(tmp_path / "split", max_epochs=4, max_steps=8)  # "killed" after 2 epochs
    first.fit(toy_data(), toy_data(seed=1))
    assert first.state.epoch == 2
    second = make_trainer(tmp_path / "split", max_epochs=4)
    second.fit(toy_data(), toy_data(seed=1), resume=True)
    assert second.state.step == full.state.step == 16
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, second.model.state_dict()[k]), k


def test_resume_without_checkpoint_names_the_path(tmp_path):
    t = make_trainer(tmp_path / "none", max_epochs=1)
    with pytest.raises(FileNotFoundError, match="last.ckpt.safetensors"):
        t.fit(toy_data(), toy_data(seed=1), resume=True)


def test_checkpoint_roundtrip_keeps_types_and_is_not_pickle(tmp_path):
    model = nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "epoch": 3,
        "config": {"a": [1, 2]},
    }
    path = tmp_path / "c.safetensors"
    save_checkpoint(state, path)
    assert not path.read_bytes().startswith(b"PK") and b"\x80\x04" not in path.read_bytes()[:16]
    back = load_checkpoint(path)
    assert back["epoch"] == 3 and back["config"] == {"a": [1, 2]}
    assert set(back["optimizer"]["state"]) == {0, 1}  # int keys survive
    opt2 = torch.optim.AdamW(nn.Linear(3, 2).parameters())
    opt2.load_state_dict(back["optimizer"])
    assert torch.equal(back["model"]["weight"], model.weight)


def test_progress_bar_does_not_change_the_data_order(tmp_path):
    """A shuffled loader with a seeded generator must give the same run with or without a bar."""
    from torch.utils.data import DataLoader, TensorDataset

    def run(progress: bool) -> torch.Tensor:
        t = make_trainer(tmp_path / str(progress), max_epochs=1, progress=progress)
        x, y = (
            torch.randn(32, 4, generator=torch.Generator().manual_seed(3)),
            torch.randint(0, 2, (32,)),
        )
        loader = DataLoader(
            TensorDataset(x, y),
            batch_size=8,
            shuffle=True,
            generator=torch.Generator().manual_seed(0),
        )
        t.fit(loader, toy_data(seed=1))
        return t.model[0].weight.detach().clone()

    assert torch.equal(run(False), run(True))


class _EpochBatches(torch.utils.data.Sampler):
    """A batch sampler whose order depends on the epoch it is told (as translation's)."""

    def __init__(self, n: int, batch: int):
        self.n, self.batch, self.epochs, self.epoch = n, batch, [], 0

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)
        self.epoch = epoch

    def __iter__(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.epoch))
        return iter(order.split(self.batch))

    def __len__(self):
        return self.n // self.batch


def test_a_batch_sampler_gets_a_new_epoch_every_epoch(tmp_path):
    data = toy_data()
    xs = torch.cat([x for x, _ in data])
    ys = torch.cat([y for _, y in data])
    batches = _EpochBatches(len(xs), 8)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(xs, ys), batch_sampler=batches
    )
    t = make_trainer(tmp_path, max_epochs=3)
    t.fit(loader, toy_data(seed=1))
    # Told every epoch in turn: without it, every epoch would replay the first one's batches.
    assert batches.epochs == [0, 1, 2]


def test_checkpoint_averaging_keeps_the_mean_of_the_last_epochs(tmp_path):
    t = make_trainer(tmp_path / "avg", max_epochs=4, average_checkpoints=3)
    t.eval_fn = lambda model, loader: {"accuracy": float(t.state.epoch)}  # every epoch is best
    t.fit(toy_data(), toy_data(seed=1))
    run = tmp_path / "avg"
    # only the epochs the average needs are kept on disk
    kept = sorted(p.name for p in run.glob("epoch-*"))
    assert kept == [f"epoch-{e}.safetensors" for e in (2, 3, 4)]
    epochs = [load_weights(run / f"epoch-{e}.safetensors") for e in (2, 3, 4)]
    assert not torch.equal(epochs[0]["0.weight"], epochs[2]["0.weight"])
    model = t.model.state_dict()
    for k in model:
        assert torch.allclose(model[k], sum(e[k] for e in epochs) / 3, atol=1e-6), k
    assert torch.equal(load_weights(run / "best.safetensors")["0.weight"], model["0.weight"])


def test_checkpoint_averaging_resumes_exactly(tmp_path):
    def improving(t):
        t.eval_fn = lambda model, loader: {"accuracy": float(t.state.epoch)}
        return t

    full = improving(make_trainer(tmp_path / "full", max_epochs=4, average_checkpoints=2))
    full.fit(toy_data(), toy_data(seed=1))
    first = improving(
        make_trainer(tmp_path / "split", max_epochs=4, max_steps=12, average_checkpoints=2)
    )
    first.fit(toy_data(), toy_data(seed=1))
    assert first.state.epoch == 3
    second = improving(make_trainer(tmp_path / "split", max_epochs=4, average_checkpoints=2))
    second.fit(toy_data(), toy_data(seed=1), resume=True)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, second.model.state_dict()[k]), k


def test_average_states_averages_floats_and_keeps_counters():
    a = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(1)}
    b = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(2)}
    out = average_states([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0])) and out["n"].item() == 2
