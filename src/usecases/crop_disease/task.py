"""Crop disease detection: the use-case plug-in (data, model, loss, metrics, prediction)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from usecases.core.config import Config, DataConfig
from usecases.core.data import MANIFEST, prepare_items, read_manifest
from usecases.core.gpu_augment import DeviceAugment
from usecases.core.images import IMAGE_SUFFIXES, ImageError, check_image
from usecases.core.inference import optimize_for_cpu
from usecases.core.io import write_text
from usecases.core.metrics import classification_metrics
from usecases.core.registry import create_model, model_entry, register_usecase
from usecases.core.task import UseCase
from usecases.crop_disease import models as _models  # noqa: F401  (registers the models)
from usecases.crop_disease.data import LeafDataset, eval_tensor


@dataclass
class CropDataConfig(DataConfig):
    layout: str = "{root}/{split}/{label}/{file}"
    image_root: str = "."
    min_side: int = 32
    max_pixels: int = 50_000_000
    augment: bool = True  # random crops, flips and colour jitter on training images
    # Where training augmentation runs: "loader" (per image, in the data loader) or "device"
    # (per batch on the training device: keeps a GPU fed; no colour jitter).
    augment_on: str = "loader"


@register_usecase("crop_disease")
class CropDisease(UseCase):
    data_config = CropDataConfig
    task = "image-classification"
    intended_use = (
        "Triage of smartphone photos of bean leaves into angular leaf spot, bean rust or healthy, "
        "to support (not replace) extension agents and plant-health experts. A research baseline "
        "for West African crop-disease programmes, which should fine-tune on local photos first."
    )
    limitations = (
        "Trained on iBean only: one crop (common bean), 3 classes, field photos from Uganda "
        "(East Africa), one country and season, images re-encoded to 256 px. Expect a domain "
        "shift on West African varieties, cameras and diseases not in the 3 classes; any other "
        "disease or crop is forced into one of the 3 labels. No leaf or plant IDs exist, so "
        "near-duplicate leaves may straddle train and validation. The test split is the "
        "published one (128 images): small, so accuracy has a wide confidence interval (±3-4 points)."
    )

    # -- data -------------------------------------------------------------------------------
    def prepare(self, cfg: Config) -> dict[str, Any]:
        d: CropDataConfig = cfg.data  # type: ignore[assignment]
        layout = d.layout.replace("{root}", d.image_root).lstrip("./")
        return prepare_items(
            raw=self.raw_dir(cfg),
            out=self.processed_dir(cfg),
            layout=layout,
            suffixes=IMAGE_SUFFIXES,
            check=lambda p: check_image(p, d.min_side, d.max_pixels),
            val_fraction=d.val_fraction,
            test_fraction=d.test_fraction,
            seed=cfg.seed,
            per_class=d.limit_per_class,
        )

    def _dataset(self, cfg: Config, meta: dict[str, Any], split: str, train: bool) -> LeafDataset:
        items = [i for i in read_manifest(self.processed_dir(cfg) / MANIFEST) if i.split == split]
        return LeafDataset(
            self.raw_dir(cfg),
            items,
            meta["labels"],
            meta["image_size"],
            meta["mean"],
            meta["std"],
            meta["crop_pct"],
            train=train,
        )

    def datasets(self, cfg: Config, meta: dict[str, Any]) -> tuple[LeafDataset, LeafDataset]:
        d: CropDataConfig = cfg.data  # type: ignore[assignment]
        if d.augment_on not in ("loader", "device"):
            raise ValueError(
                f"Unknown data.augment_on {d.augment_on!r}; expected 'loader' or 'device'"
            )
        on_device = d.augment and d.augment_on == "device"
        train = self._dataset(cfg, meta, "train", train=d.augment and not on_device)
        train.raw = on_device  # uint8 squares; DeviceAugment crops and normalises the batch
        return train, self._dataset(cfg, meta, "val", train=False)

    def train_batch_transform(self, cfg: Config, meta: dict[str, Any]):
        d: CropDataConfig = cfg.data  # type: ignore[assignment]
        if not (d.augment and d.augment_on == "device"):
            return None
        return DeviceAugment(meta["image_size"], meta["mean"], meta["std"])

    # -- model ------------------------------------------------------------------------------
    def model_meta(self, cfg: Config, labels: list[str]) -> dict[str, Any]:
        entry = model_entry(cfg.model.name)
        return {
            "arch": cfg.model.name,
            "usecase": self.name,
            "labels": list(labels),
            "image_size": cfg.model.image_size,
            "mean": list(entry.meta["mean"]),
            "std": list(entry.meta["std"]),
            "crop_pct": entry.meta["crop_pct"],
            "licence": entry.meta.get("licence", ""),
            "source": entry.meta.get("source", "")
            if (cfg.model.pretrained or cfg.model.weights)
            else "scratch",
        }

    def build_model(
        self, cfg: Config, labels: list[str], pretrained: bool | None = None
    ) -> nn.Module:
        m = cfg.model
        return create_model(
            m.name,
            pretrained=m.pretrained if pretrained is None else pretrained,
            num_classes=len(labels),
            image_size=m.image_size,
            dropout=m.dropout,
            weights=m.weights if pretrained is not False else None,
        )

    def loss_fn(self, cfg: Config):
        smoothing = cfg.optim.label_smoothing

        def loss(model: nn.Module, batch) -> torch.Tensor:
            x, y = batch
            return F.cross_entropy(model(x), y, label_smoothing=smoothing)

        return loss

    def eval_fn(self, cfg: Config):
        def evaluate(model: nn.Module, loader) -> dict[str, float]:
            correct, total, loss = 0, 0, 0.0
            for x, y in loader:
                logits = model(x).float()
                loss += F.cross_entropy(logits, y, reduction="sum").item()
                correct += (logits.argmax(1) == y).sum().item()
                total += len(y)
            return {"accuracy": correct / max(1, total), "loss": loss / max(1, total)}

        return evaluate

    # -- evaluation and prediction ------------------------------------------------------------
    @torch.no_grad()
    def evaluate(
        self, cfg: Config, model: nn.Module, meta: dict[str, Any], out_dir: Path
    ) -> dict[str, Any]:
        ds = self._dataset(cfg, meta, "test", train=False)
        loader = DataLoader(ds, batch_size=cfg.data.eval_batch_size)
        model.eval()
        probs = torch.cat([F.softmax(model(x).float(), dim=1) for x, _ in loader])
        pred = probs.argmax(1)
        labels = meta["labels"]
        metrics = classification_metrics(ds.targets.tolist(), pred.tolist(), labels)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "actual", "predicted", "probability"])
        for it, p, pr in zip(ds.items, pred.tolist(), probs.tolist(), strict=True):
            w.writerow([it.path, it.label, labels[p], f"{pr[p]:.6f}"])
        write_text(out_dir / "predictions.csv", buf.getvalue())
        return metrics

    def example_inputs(self, cfg: Config, meta: dict[str, Any], n: int) -> torch.Tensor:
        items = [i for i in read_manifest(self.processed_dir(cfg) / MANIFEST) if i.split == "test"][
            :n
        ]
        if not items:
            raise ValueError(
                f"{self.processed_dir(cfg) / MANIFEST}: no test items for the parity check"
            )
        size, mean, std, crop = meta["image_size"], meta["mean"], meta["std"], meta["crop_pct"]
        return torch.stack(
            [eval_tensor(self.raw_dir(cfg) / i.path, size, mean, std, crop) for i in items]
        )

    @torch.no_grad()
    def predict(
        self, model: nn.Module, meta: dict[str, Any], inputs: list[str]
    ) -> list[dict[str, Any]]:
        size = meta["image_size"]
        model = optimize_for_cpu(model, torch.zeros(1, 3, size, size))
        out = []
        for path in inputs:
            try:
                x = eval_tensor(
                    Path(path), meta["image_size"], meta["mean"], meta["std"], meta["crop_pct"]
                )
            except (ImageError, OSError) as e:
                out.append({"input": path, "error": str(e)})
                continue
            x = x.unsqueeze(0).contiguous(memory_format=torch.channels_last)
            p = F.softmax(model(x).float(), dim=1)[0]
            k = int(p.argmax())
            out.append(
                {
                    "input": path,
                    "label": meta["labels"][k],
                    "probability": round(float(p[k]), 6),
                    "probabilities": {
                        lab: round(float(v), 6)
                        for lab, v in zip(meta["labels"], p.tolist(), strict=True)
                    },
                }
            )
        return out
