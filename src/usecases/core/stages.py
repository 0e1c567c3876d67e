"""The pipeline stages, each a function of the typed config: fetch, prepare, train, evaluate,
report, index. `dvc.yaml` runs them through the `zoo` CLI; notebooks call them directly."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from usecases.core import distributed
from usecases.core.cards import write_model_card
from usecases.core.checkpoint import load_weights, read_metadata, save_weights
from usecases.core.config import Config
from usecases.core.data import MANIFEST, SUMMARY
from usecases.core.io import read_yaml, sha256_file, write_json, write_text, write_yaml
from usecases.core.registry import get_usecase
from usecases.core.trainer import Trainer, build_optimizer, build_scheduler, seed_everything

log = logging.getLogger(__name__)

WEIGHTS, CONFIG, METRICS, HISTORY, CARD, SPEED = (
    "weights.safetensors",
    "config.yaml",
    "metrics.json",
    "history.csv",
    "model_card.md",
    "speed.json",
)


def model_dir(cfg: Config) -> Path:
    return Path(cfg.paths.models) / cfg.usecase / cfg.name


def run_dir(cfg: Config) -> Path:
    return Path(cfg.paths.runs) / cfg.usecase / cfg.name


def fetch(cfg: Config, offline: bool = False, force: bool = False) -> Path:
    return get_usecase(cfg.usecase).fetch(cfg, offline=offline, force=force)


def prepare(cfg: Config) -> dict[str, Any]:
    summary = get_usecase(cfg.usecase).prepare(cfg)
    log.info(
        "prepared %s: %s (quarantined %d)", cfg.usecase, summary["counts"], summary["quarantined"]
    )
    return summary


def read_summary(cfg: Config) -> dict[str, Any]:
    path = get_usecase(cfg.usecase).processed_dir(cfg) / SUMMARY
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run `zoo prepare {cfg.usecase}` first")
    return json.loads(path.read_text(encoding="utf-8"))


def configure_torch(cfg: Config) -> None:
    if cfg.trainer.threads > 0:
        torch.set_num_threads(cfg.trainer.threads)
    seed_everything(cfg.seed, cfg.trainer.deterministic)


def _history_csv(history: list[dict[str, float]]) -> str:
    keys = sorted(
        {k for row in history for k in row}, key=lambda k: (k not in ("epoch", "step"), k)
    )
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    w.writerows(history)
    return buf.getvalue()


def train(cfg: Config, resume: bool = False) -> dict[str, Any]:
    """Train, select on validation, and write the release: weights, config and history.

    Under `torchrun` with `trainer=ddp`, every rank trains and rank 0 alone writes.
    """
    device = distributed.setup(cfg.trainer.strategy, cfg.trainer.device, cfg.trainer.backend)
    try:
        return _train(cfg, device, resume)
    finally:
        distributed.teardown()


def _train(cfg: Config, device: str, resume: bool) -> dict[str, Any]:
    uc = get_usecase(cfg.usecase)
    configure_torch(cfg)
    labels = read_summary(cfg)["labels"]
    meta = uc.model_meta(cfg, labels)
    meta["data_sha256"] = sha256_file(uc.processed_dir(cfg) / MANIFEST)
    model = uc.build_model(cfg, labels).to(device)
    if cfg.trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_loader, val_loader = uc.build_loaders(cfg, meta)
    if not resume and (facts := uc.init_from_data(cfg, model, train_loader.dataset)):
        log.info("initialised from the training data: %s", facts)
    accum = max(1, cfg.trainer.grad_accum)
    steps_per_epoch = max(1, len(train_loader) // accum)
    total = cfg.trainer.max_epochs * steps_per_epoch
    if cfg.trainer.max_steps >= 0:
        total = min(total, cfg.trainer.max_steps)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, total, steps_per_epoch)
    wrapped = distributed.wrap(model, device, cfg.trainer.sync_batchnorm)
    if cfg.trainer.compile:
        wrapped = torch.compile(wrapped)
    trainer = Trainer(
        cfg.trainer,
        wrapped,
        optimizer,
        scheduler,
        uc.loss_fn(cfg),
        uc.eval_fn(cfg),
        run_dir(cfg),
        config=cfg.to_dict(),
        device=device,
        batch_transform=uc.train_batch_transform(cfg, meta),
    )
    state = trainer.fit(train_loader, val_loader, resume=resume)
    result = {
        "best_epoch": state.best_epoch,
        "best": state.best,
        "epochs": state.epoch,
        "steps": state.step,
    }
    if not distributed.is_main():
        return result
    out = model_dir(cfg)
    meta.update(best_epoch=state.best_epoch, epochs=state.epoch, steps=state.step)
    meta.update(uc.fit_heads(cfg, model.eval(), meta))
    if distributed.world_size() > 1:
        meta["world_size"] = distributed.world_size()
    save_weights(model.state_dict(), out / WEIGHTS, meta)
    write_yaml(out / CONFIG, cfg.to_dict())
    write_text(out / HISTORY, _history_csv(state.history))
    return result


def load_model(path: Path) -> tuple[torch.nn.Module, dict[str, Any], Config]:
    """A released model from models/<usecase>/<name>/: (model in eval mode, metadata, config)."""
    path = Path(path)
    for f in (WEIGHTS, CONFIG):
        if not (path / f).is_file():
            raise FileNotFoundError(f"{path / f}: not found; train the model first (zoo train)")
    raw = read_yaml(path / CONFIG)
    uc = get_usecase(raw["usecase"])
    cfg = uc.config(raw)
    meta = read_metadata(path / WEIGHTS)
    model = uc.build_model(cfg, meta["labels"], pretrained=False)
    model.load_state_dict(load_weights(path / WEIGHTS))
    return model.eval(), meta, cfg


def evaluate(cfg: Config) -> dict[str, Any]:
    """Test-split metrics (metrics.json), plot data and the model card."""
    configure_torch(cfg)
    out = model_dir(cfg)
    model, meta, _ = load_model(out)
    uc = get_usecase(cfg.usecase)
    metrics = uc.evaluate(cfg, model, meta, out)
    metrics["split"] = "test"
    # The matrix goes to plot data, not to `dvc metrics show`.
    cm = metrics.pop("confusion_matrix", None)
    if cm is not None:
        write_confusion_csv(out / "confusion.csv", cm)
        write_json(out / "confusion_matrix.json", cm)
    write_json(out / METRICS, metrics)
    # Timings vary run to run: they go to speed.json and the card, never into metrics.json.
    speed = measure_release_speed(cfg, model, meta)
    if speed is not None:
        write_json(out / SPEED, speed)
    write_model_card(
        out / CARD,
        name=cfg.name,
        usecase=uc,
        cfg=cfg.to_dict(),
        meta=meta,
        metrics=metrics,
        data_hash=meta.get("data_sha256", ""),
        weights_hash=sha256_file(out / WEIGHTS),
        speed=speed,
        train_speed=train_throughput(out / HISTORY, cfg),
    )
    return metrics


def measure_release_speed(
    cfg: Config, model: torch.nn.Module, meta: dict[str, Any]
) -> dict[str, Any] | None:
    """CPU latency and throughput on real test inputs; None if the use case gives no examples."""
    from usecases.core.zoo import measure_speed

    try:
        batch = get_usecase(cfg.usecase).example_inputs(cfg, meta, 32)
    except NotImplementedError:
        return None
    return measure_speed(model, batch)


def train_throughput(history: Path, cfg: Config) -> float | None:
    """Training items/s over the whole run, from history.csv's per-epoch timings."""
    if not history.is_file():
        return None
    with open(history, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "train_seconds" not in rows[0]:
        return None
    seconds = sum(float(r["train_seconds"]) for r in rows)
    steps = int(rows[-1]["step"])
    items = steps * cfg.data.batch_size * max(1, cfg.trainer.grad_accum)
    return round(items / seconds, 1) if seconds > 0 else None


def write_confusion_csv(path: Path, cm: dict[str, Any]) -> None:
    """One row per (actual, predicted) pair, as `dvc plots` confusion templates expect."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["actual", "predicted"])
    labels = cm["labels"]
    for i, row in enumerate(cm["matrix"]):
        for j, n in enumerate(row):
            w.writerows([[labels[i], labels[j]]] * n)
    write_text(path, buf.getvalue())


def report(cfg: Config, notebook: Path | None = None, kernel: str | None = None) -> Path:
    """Execute the use case's report notebook with papermill and export it to HTML."""
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    from usecases.core.config import repo_root
    from usecases.core.io import atomic_path

    notebook = notebook or repo_root() / "notebooks" / cfg.usecase / "report.ipynb"
    if not notebook.is_file():
        raise FileNotFoundError(f"{notebook}: report template not found")
    out_dir = Path(cfg.paths.reports) / cfg.usecase
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / f"{cfg.name}.ipynb"
    html = out_dir / f"{cfg.name}.html"
    params = {
        "model_dir": str(model_dir(cfg).resolve()),
        "processed_dir": str(get_usecase(cfg.usecase).processed_dir(cfg).resolve()),
        "raw_dir": str(get_usecase(cfg.usecase).raw_dir(cfg).resolve()),
    }
    with atomic_path(executed) as tmp_nb:
        pm.execute_notebook(
            str(notebook),
            str(tmp_nb),
            parameters=params,
            kernel_name=kernel,
            progress_bar=False,
            cwd=str(Path.cwd()),
            language="python",
        )
        nb = nbformat.read(tmp_nb, as_version=4)
        body, _ = HTMLExporter(
            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True
        ).from_notebook_node(nb)
        write_text(html, body)
    return html


def index(reports_root: Path, models_root: Path) -> Path:
    """reports/index.html: every report with its headline metrics."""
    import html as h

    rows = []
    for metrics_path in sorted(models_root.glob("*/*/" + METRICS)):
        uc, name = metrics_path.parent.parent.name, metrics_path.parent.name
        m = json.loads(metrics_path.read_text(encoding="utf-8"))
        report_file = reports_root / uc / f"{name}.html"
        link = (
            f'<a href="{h.escape(os.path.relpath(report_file, reports_root))}">{h.escape(name)}</a>'
            if report_file.is_file()
            else h.escape(name)
        )
        from usecases.core.zoo import HEADLINE

        key = next((k for k in HEADLINE if isinstance(m.get(k), float)), None)
        cells = f"<td>{h.escape(key)} {m[key]:.4f}</td>" if key else "<td>-</td>"
        cells += (
            f"<td>{m['macro_f1']:.4f}</td>"
            if isinstance(m.get("macro_f1"), float)
            else "<td>-</td>"
        )
        rows.append(
            f"<tr><td>{h.escape(uc)}</td><td>{link}</td>{cells}<td>{m.get('n', '-')}</td></tr>"
        )
    body = "\n".join(rows) or '<tr><td colspan="5">no trained models yet</td></tr>'
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>usecase-zoo reports</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .8em}}</style>
</head><body>
<h1>usecase-zoo: reports</h1>
<p>Every figure is measured on the test split of its data set (the published one where there is one).</p>
<table><tr><th>use case</th><th>model (report)</th><th>test metric</th><th>macro-F1</th><th>test items</th></tr>
{body}
</table></body></html>
"""
    out = reports_root / "index.html"
    write_text(out, page)
    return out
