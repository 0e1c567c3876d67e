"""Hyper-parameter sweeps: Hydra multirun over the same configs as `zoo train`.

    zoo sweep -m usecase=crop_disease model=tinycnn,resnet18 optim.lr=1e-3,3e-4
    zoo sweep -m ... hydra/launcher=joblib hydra.launcher.n_jobs=2 trainer.threads=1
    zoo sweep -m ... hydra/launcher=slurm hydra.launcher.partition=gpu trainer=gpu

Each job trains on the prepared data (run `zoo prepare` first) and keeps its release and run
folder inside its own job folder, `multirun/<usecase>/<time>/<job>/`, so jobs never overwrite
each other or the pipeline's `models/`. Jobs are scored on the *validation* split (the trainer's
monitor); the test split stays for the release that the sweep's winner becomes. When the sweep
ends, `summary.csv` in the sweep folder lists every job, best first.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RESULT = "result.json"
SUMMARY = "summary.csv"


def run_job(cfg: Any) -> float:
    """One sweep job: train with the job's config; return the best validation score."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from usecases.core import stages
    from usecases.core.io import write_json
    from usecases.core.registry import get_usecase

    _export_slurm_distributed_env()
    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    data = OmegaConf.to_container(cfg, resolve=True)
    data["paths"]["models"] = str(job_dir / "models")
    data["paths"]["runs"] = str(job_dir / "runs")
    config = get_usecase(data["usecase"]).config(data)
    result = stages.train(config)
    write_json(
        job_dir / RESULT,
        {
            "job": hydra_cfg.job.num,
            "overrides": list(hydra_cfg.overrides.task),
            "monitor": f"val_{config.trainer.monitor}",
            "mode": config.trainer.monitor_mode,
            **result,
        },
    )
    return float(result["best"])


def _export_slurm_distributed_env() -> None:
    """In a multi-task SLURM job, set RANK/WORLD_SIZE/MASTER_* from SLURM's variables, as
    torchrun would, so `trainer=ddp_gpu` joins one process group across the job's tasks."""
    if (
        os.environ.get("SUBMITIT_EXECUTOR") == "slurm"
        and int(os.environ.get("SLURM_NTASKS", "1")) > 1
        and "WORLD_SIZE" not in os.environ
    ):
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export()


def summarise(sweep_dir: Path) -> Path:
    """summary.csv: one row per finished job (job, overrides, monitor, best, epochs), best first."""
    rows = [
        json.loads(p.read_text(encoding="utf-8")) for p in sorted(sweep_dir.glob(f"*/{RESULT}"))
    ]
    if not rows:
        raise FileNotFoundError(f"{sweep_dir}: no finished jobs ({RESULT} files)")
    sign = -1.0 if rows[0]["mode"] == "max" else 1.0
    rows.sort(key=lambda r: (sign * r["best"], r["job"]))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["job", "overrides", "monitor", "best", "best_epoch", "epochs", "steps"])
    for r in rows:
        w.writerow(
            [
                r["job"],
                " ".join(r["overrides"]),
                r["monitor"],
                r["best"],
                r["best_epoch"],
                r["epochs"],
                r["steps"],
            ]
        )
    from usecases.core.io import write_text

    out = sweep_dir / SUMMARY
    write_text(out, buf.getvalue())
    return out


class SweepSummary:
    """Hydra callback (configs/sweep.yaml): write summary.csv when a multirun ends."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        out = summarise(Path(config.hydra.sweep.dir))
        log.info("sweep summary: %s", out)

    # Hydra calls these on every callback; nothing to do for them.
    def on_run_start(self, config: Any, **kwargs: Any) -> None: ...
    def on_run_end(self, config: Any, **kwargs: Any) -> None: ...
    def on_multirun_start(self, config: Any, **kwargs: Any) -> None: ...
    def on_job_start(self, config: Any, **kwargs: Any) -> None: ...
    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None: ...


def main(argv: list[str] | None = None) -> int:
    """`zoo sweep ARGS`: Hydra's own command line (-m, overrides, hydra/launcher=...)."""
    import hydra

    from usecases.core.config import config_dir

    argv = list(sys.argv[1:] if argv is None else argv)
    task = hydra.main(config_path=str(config_dir()), config_name="sweep", version_base="1.3")(
        run_job
    )
    saved = sys.argv
    sys.argv = ["zoo sweep", *argv]
    try:
        task()
    finally:
        sys.argv = saved
    return 0
