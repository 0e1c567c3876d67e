"""Model cards in the Hugging Face format: YAML front matter + markdown body."""

from __future__ import annotations

import platform
import shlex
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from usecases.core.io import write_text

_PACKAGES = (
    "usecases",
    "torch",
    "torchvision",
    "numpy",
    "pillow",
    "scikit-learn",
    "safetensors",
    "hydra-core",
    "dvc",
)


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def code_commit(root: Path | None = None) -> str:
    """HEAD's hash, with "-dirty" only if code or configs differ from it (pipeline outputs such
    as dvc.lock change during `dvc repro` and do not count)."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        if head.returncode != 0:
            return "unknown"
        dirty = git("status", "--porcelain", "--", "src", "configs", "notebooks", "params.yaml")
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _spdx(licence: str) -> str:
    return licence.strip().lower().replace(" ", "-") or "other"


# The arguments of the `zoo evaluate` being run (set by the CLI through `record_command`): the
# card tells how to rebuild the release it describes. Empty when called from Python.
_command: list[str] = []


def record_command(args: Sequence[str]) -> None:
    """Remember the use case and overrides (or `--params KEY`) of the `zoo evaluate` at hand."""
    _command[:] = [str(a) for a in args if a is not None]


def reproduce_section() -> str:
    """Commands that rebuild the release from fetched data, or "" when none was recorded."""
    if not _command:
        return ""
    args = shlex.join(_command)
    text = (
        "\n## Reproduce\nFrom the repository root, after `make install data`:\n\n"
        f"```bash\nzoo prepare {args}\nzoo train {args}\nzoo evaluate {args}\nzoo report {args}\n```\n"
    )
    if _command[0] == "--params":
        text += (
            "\nThis release is a run of the pipeline (`configs/pipeline.yaml`): `dvc repro` "
            "(`make repro`) runs the same stages, with `params.yaml` from `zoo params`.\n"
        )
    return text


def render_model_card(
    *,
    name: str,
    usecase: Any,
    cfg: dict[str, Any],
    meta: dict[str, Any],
    metrics: dict[str, Any],
    data_hash: str,
    weights_hash: str,
    speed: dict[str, Any] | None = None,
    train_speed: float | None = None,
) -> str:
    data = cfg["data"]
    scalar = {k: v for k, v in metrics.items() if isinstance(v, int | float) and k != "n"}
    front = {
        "license": _spdx(data.get("licence", "")),
        "library_name": "pytorch",
        "pipeline_tag": usecase.task,
        "tags": ["usecase-zoo", usecase.name, meta.get("arch", "")],
        "datasets": [data.get("dataset_name", "")],
        "metrics": sorted(scalar),
        "model-index": [
            {
                "name": f"{usecase.name}/{name}",
                "results": [
                    {
                        "task": {"type": usecase.task},
                        "dataset": {
                            "name": data.get("dataset_name", ""),
                            "type": data.get("dataset_name", ""),
                            "split": "test",
                        },
                        "metrics": [{"type": k, "value": v} for k, v in sorted(scalar.items())],
                    }
                ],
            }
        ],
    }
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(scalar.items()))
    per_class = metrics.get("per_class", {})
    pc_rows = "\n".join(
        f"| {c} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |"
        for c, m in per_class.items()
    )
    pc_table = (
        f"| class | precision | recall | F1 | support |\n|---|---|---|---|---|\n{pc_rows}\n"
        if per_class
        else ""
    )
    versions = "\n".join(f"- {k} {v}" for k, v in package_versions().items())
    body = f"""
# {usecase.name} / {name}

Architecture `{meta.get("arch")}`{f", input {meta['image_size']} px" if meta.get("image_size") else ""}, labels: {", ".join(meta.get("labels", []))}.
Weights: `weights.safetensors` (sha256 `{weights_hash}`); preprocessing and labels are in its metadata.

## Intended use
{usecase.intended_use}

## Results (published test split, {metrics.get("n", "?")} items; never a training or validation figure)
| metric | value |
|---|---|
{rows}

{pc_table}{usecase.card_sections(metrics)}
{_speed_section(speed, train_speed, cfg)}{reproduce_section()}
## Limitations
{usecase.limitations}

## Data
{data.get("dataset_name", "")}, licence {data.get("licence", "")}. Citation: {data.get("citation", "")}
Manifest sha256 (data hash): `{data_hash}`. Pretrained start: {meta.get("source", "none")} ({meta.get("licence", "")}).

## Provenance
- code commit: `{code_commit()}`
- profile: `{cfg.get("profile")}`, seed {cfg.get("seed")}

### Config
```yaml
{yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True).rstrip()}
```

### Package versions
{versions}
"""
    return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n" + body


def _speed_section(
    speed: dict[str, Any] | None, train_speed: float | None, cfg: dict[str, Any]
) -> str:
    if not speed and train_speed is None:
        return ""
    lines = [
        "## Speed (measured while this card was written; timings vary by ±20 %)"
        if speed
        else "## Training speed (from history.csv)"
    ]
    if train_speed is not None:
        t, d = cfg["trainer"], cfg["data"]
        if d.get("tokens_per_batch"):  # batches cut by a token budget, not a number of items
            updates = train_speed / (d["batch_size"] * max(1, t.get("grad_accum", 1)))
            lines.append(
                f"- training: {updates:.2f} updates/s of about {d['tokens_per_batch']} tokens "
                f"on `{t['device']}` ({t['precision']} precision)"
            )
        else:
            lines.append(
                f"- training: {train_speed:.1f} items/s on `{t['device']}` "
                f"({t['precision']} precision, batch {d['batch_size']})"
            )
    if speed:
        lat = speed["latency_ms_batch1_1thread"]
        lines.append(
            f"- CPU latency, batch 1, 1 thread: {lat['optimised']:.2f} ms as `zoo predict` runs "
            f"it (eager PyTorch {lat['eager']:.2f} ms)"
        )
        lines.append(
            f"- CPU throughput, batch {speed['throughput_batch']}, {speed['threads']} threads: "
            f"{speed['throughput_items_per_s']:.1f} items/s"
        )
        lines.append(f"- machine: {speed['machine']}, torch {speed['torch']}")
        lines.append("- ONNX Runtime: `zoo export` and `benchmarks/latency.py`")
    return "\n".join(lines) + "\n"


def write_model_card(path: Path, **kwargs: Any) -> None:
    write_text(path, render_model_card(**kwargs))
