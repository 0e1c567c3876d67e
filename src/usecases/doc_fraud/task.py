"""Forged civil-status document detection: the use-case plug-in.

Two detectors and their fusion, all in one release:
1. pixels: `doc_tilecnn` scores page tiles (heat map; page score = its aggregate);
2. fields: Tesseract reads the fields (in `prepare`, once per document), rule checks and OCR
   confidence/geometry plus page ink and stamp statistics and pixel forensics around the
   values read (`forensics`: noise level, JPEG block grids and ghosts, the digits' line) feed
   one logistic regression per forgery kind seen in training (`heads.fit_experts`, fitted on
   train; a page's score is its most alarmed expert; suspicion features held to non-negative
   weights so that an unseen kind of edit that raises one cannot lower the score);
3. fusion: a logistic regression over both detectors' log-odds, fitted on validation;
4. novelty: how far the values' glyph measures sit above those of authentic training pages
   (`heads.fit_tail`); beyond a gate set in robust spreads of authentic validation pages it
   raises the fused log-odds, so an edit of a kind no head was trained on still shows.
The operating threshold is set on validation at `data.max_fpr` false positives.
A score only triggers a human inspection; it is never a decision.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from usecases.core.config import Config, DataConfig
from usecases.core.data import (
    MANIFEST,
    QUARANTINE,
    SPLITS,
    SUMMARY,
    DataError,
    Item,
    Rejected,
    make_splits,
    write_manifest,
    write_quarantine,
)
from usecases.core.images import ImageError, check_image, load_rgb
from usecases.core.io import sha256_file, write_json, write_text
from usecases.core.registry import create_model, model_entry, register_usecase
from usecases.core.task import UseCase
from usecases.doc_fraud import heads
from usecases.doc_fraud import models as _models  # noqa: F401  (registers the models)
from usecases.doc_fraud.data import DOCUMENTS, Document, read_collection, read_documents
from usecases.doc_fraud.features import NOVELTY_FEATURES
from usecases.doc_fraud.features import SUSPICION_FEATURES as _FIELD_SUSPICION
from usecases.doc_fraud.forensics import FORENSIC_SUSPICION, PIXEL_FEATURE_NAMES

log = logging.getLogger(__name__)

OCR_FILE = "ocr.jsonl"
# Fields-head inputs that may only weigh positively (see heads.fit_logistic).
SUSPICION_FEATURES = (*_FIELD_SUSPICION, *FORENSIC_SUSPICION)
GENERATOR_FILE = "GENERATOR.json"
PROFILE_MIN_PAGES = 5  # authentic training pages needed to profile a layout (heads.fit_profile)


@dataclass
class DocDataConfig(DataConfig):
    # The generated corpus (data/raw/doc_fraud is built by `zoo fetch` from these arguments of
    # usecases.doc_fraud.synth.generate); null = bring a collection (folder + labels.csv).
    generator: dict[str, Any] | None = None
    labels_csv: str = "labels.csv"
    min_side: int = 200
    max_pixels: int = 50_000_000
    stride: int = 0  # tile stride in pixels; 0 = the tile size (model.image_size)
    negatives_per_page: int = 8  # clean tiles sampled per training page
    ocr_workers: int = 0  # parallel page processes (Tesseract, pixel features); 0 = per CPU core
    max_fpr: float = 0.01  # operating point: false-positive rate allowed on validation
    # Novelty (heads.fit_tail / add_novelty): tail quantile of authentic training pages, how
    # many of a page's largest exceedances add up, and the gate in robust spreads of authentic
    # validation pages above which novelty raises the score.
    novelty_quantile: float = 0.95
    novelty_top: int = 2
    novelty_gate: float = 3.0
    # Inverse L2 strength of the fields head's per-kind logistic regressions (heads.fit_experts).
    fields_c: float = 0.1
    layouts: list[str] = field(default_factory=lambda: ["benin", "niger"])


def _stride(cfg: Config) -> int:
    d: DocDataConfig = cfg.data  # type: ignore[assignment]
    return d.stride or cfg.model.image_size


@register_usecase("doc_fraud")
class DocFraud(UseCase):
    data_config = DocDataConfig
    task = "image-classification"
    intended_use = (
        "Triage of scanned civil-status documents (birth certificates) for a human inspection: "
        "a high score means 'have an officer check this document against the register', never "
        "'this document is forged'. A research baseline for West African civil-status "
        "programmes, to be re-trained and re-validated on real scans before any use."
    )
    limitations = (
        "Trained and tested on a generated corpus: two layouts (a Benin commune register style "
        "and a Niger style) drawn by the project, programmatic forgeries of five kinds, "
        "simulated scans. Real certificates differ in layout, paper, stamps, handwriting and "
        "forgery craft: expect far lower accuracy on real scans until fine-tuned on them. "
        "Only forgery kinds seen in training are reliably detected; one kind is held out to "
        "measure that gap. No real person's data is used: names come from Faker's fr_FR, "
        "yo_NG and ha_NG lists and places from public gazetteers. Error rates per layout and "
        "per name origin are reported to expose bias; the test set is small (about 150 "
        "documents), so rates have wide confidence intervals."
    )

    # -- data -------------------------------------------------------------------------------
    def fetch(self, cfg: Config, offline: bool = False, force: bool = False) -> Path:
        d: DocDataConfig = cfg.data  # type: ignore[assignment]
        if d.generator is None:
            return super().fetch(cfg, offline=offline, force=force)
        from usecases.doc_fraud.synth.corpus import generate

        out = self.raw_dir(cfg)
        params = dict(d.generator)
        stamp = out / GENERATOR_FILE
        if not force and stamp.is_file():
            record = json.loads(stamp.read_text(encoding="utf-8"))
            done = {"seed": record.get("seed"), **record.get("params", {})}
            if all(
                done.get(k) == (list(v) if isinstance(v, tuple) else v) for k, v in params.items()
            ):
                log.info("%s: up to date (generated with the same arguments)", out)
                return out
        if "layouts" in params:
            params["layouts"] = tuple(params["layouts"])
        t0 = time.perf_counter()
        summary = generate(out, **params)
        log.info(
            "generated %d documents into %s in %.0f s",
            sum(sum(c.values()) for c in summary.get("counts", {}).values())
            or params.get("n_documents", 0),
            out,
            time.perf_counter() - t0,
        )
        return out

    def prepare(self, cfg: Config) -> dict[str, Any]:
        """Check every scan (quarantine with a reason), keep or draw splits, OCR every kept
        document once (fields, confidences, geometry) into ocr.jsonl."""
        d: DocDataConfig = cfg.data  # type: ignore[assignment]
        raw, out = self.raw_dir(cfg), self.processed_dir(cfg)
        docs = read_collection(raw, d.labels_csv)
        kept: list[Document] = []
        bad: list[Rejected] = []
        for doc in docs:
            path = raw / doc.path
            reason = (
                check_image(path, d.min_side, d.max_pixels) if path.is_file() else "file not found"
            )
            if reason:
                bad.append(Rejected(doc.path, reason))
            else:
                kept.append(doc)
        kept = _splits(kept, d.val_fraction, d.test_fraction, cfg.seed)
        kept = _limit(kept, d.limit_per_class)
        counts = {
            s: dict(sorted(Counter(x.label for x in kept if x.split == s).items())) for s in SPLITS
        }
        empty = [s for s in SPLITS if len(counts[s]) < 2]
        if empty:
            raise DataError(
                f"{raw}: split(s) {empty} lack authentic or forged documents after quarantine"
            )
        items = [Item(x.path, x.label, x.split, sha256_file(raw / x.path)) for x in kept]
        t0 = time.perf_counter()
        ocr = _ocr_all(raw, kept, d.ocr_workers)
        seconds = time.perf_counter() - t0
        log.info(
            "OCR of %d documents: %.0f s (%.2f s per page)",
            len(kept),
            seconds,
            seconds / max(1, len(kept)),
        )
        write_text(
            out / OCR_FILE,
            "".join(
                json.dumps({"path": p, "ocr": ocr[p]}, sort_keys=True, ensure_ascii=False) + "\n"
                for p in sorted(ocr)
            ),
        )
        from usecases.doc_fraud.data import write_documents

        write_documents(out / DOCUMENTS, kept)
        write_manifest(out / MANIFEST, items)
        write_quarantine(out / QUARANTINE, bad)
        types = {
            s: dict(
                sorted(Counter(x.forgery_type or "authentic" for x in kept if x.split == s).items())
            )
            for s in SPLITS
        }
        summary = {
            "labels": ["authentic", "forged"],
            "counts": counts,
            "forgery_types": types,
            "holdout_type": (d.generator or {}).get("holdout_type"),
            "scanned": len(docs),
            "quarantined": len(bad),
        }
        write_json(out / SUMMARY, summary)
        return summary

    def documents(self, cfg: Config, split: str | None = None) -> list[Document]:
        docs = read_documents(self.processed_dir(cfg) / DOCUMENTS)
        return [x for x in docs if split is None or x.split == split]

    def ocr_results(self, cfg: Config) -> dict[str, Any]:
        from usecases.doc_fraud.ocr import OcrResult

        path = self.processed_dir(cfg) / OCR_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; run `zoo prepare doc_fraud` first")
        out = {}
        with open(path, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                out[row["path"]] = OcrResult.from_json(row["ocr"])
        return out

    def _pages(self, cfg: Config, split: str) -> list[tuple[Path, Path | None]]:
        raw = self.raw_dir(cfg)
        return [
            (raw / x.path, raw / x.mask if x.mask else None) for x in self.documents(cfg, split)
        ]

    def datasets(self, cfg: Config, meta: dict[str, Any]):
        from usecases.doc_fraud.tiles import TileDataset

        d: DocDataConfig = cfg.data  # type: ignore[assignment]
        common = dict(
            tile=meta["image_size"],
            stride=_stride(cfg),
            mean=meta["mean"],
            std=meta["std"],
            seed=cfg.seed,
            negatives_per_page=d.negatives_per_page,
        )
        return (
            TileDataset(self._pages(cfg, "train"), train=True, **common),
            TileDataset(self._pages(cfg, "val"), train=False, **common),
        )

    # -- model ------------------------------------------------------------------------------
    def model_meta(self, cfg: Config, labels: list[str]) -> dict[str, Any]:
        entry = model_entry(cfg.model.name)
        return {
            "arch": cfg.model.name,
            "usecase": self.name,
            "labels": ["clean_tile", "forged_tile"],
            "document_labels": list(labels),
            "image_size": cfg.model.image_size,  # the tile side
            "stride": _stride(cfg),
            "mean": list(entry.meta["mean"]),
            "std": list(entry.meta["std"]),
            "crop_pct": 1.0,
            "licence": entry.meta.get("licence", ""),
            "source": "scratch",
        }

    def build_model(
        self, cfg: Config, labels: list[str], pretrained: bool | None = None
    ) -> nn.Module:
        m = cfg.model
        return create_model(
            m.name,
            pretrained=False,
            num_classes=2,
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
            from sklearn.metrics import roc_auc_score

            probs, targets, loss = [], [], 0.0
            for x, y in loader:
                logits = model(x).float()
                loss += F.cross_entropy(logits, y, reduction="sum").item()
                probs.append(F.softmax(logits, 1)[:, 1])
                targets.append(y)
            p, t = torch.cat(probs).numpy(), torch.cat(targets).numpy()
            both = len(set(t.tolist())) == 2
            return {
                "auroc": float(roc_auc_score(t, p)) if both else 0.5,
                "accuracy": float(((p > 0.5) == t).mean()),
                "loss": loss / max(1, len(t)),
            }

        return evaluate

    # -- the two detectors and their fusion ---------------------------------------------------
    def _page_scores(
        self,
        cfg: Config,
        model: nn.Module,
        meta: dict[str, Any],
        docs: list[Document],
        ocr: dict[str, Any],
    ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """(image log-odds [n], heat maps, pixel features [n, k]) for documents of the corpus."""
        from usecases.doc_fraud.tiles import score_page

        d: DocDataConfig = cfg.data  # type: ignore[assignment]
        raw = self.raw_dir(cfg)
        inks = _inks(raw, docs, ocr, d.ocr_workers)
        logits, heats = [], []
        model.eval()
        for x in docs:
            image = load_rgb(raw / x.path)
            score, heat = score_page(
                model, image, meta["image_size"], meta["stride"], meta["mean"], meta["std"]
            )
            logits.append(heads.prob_to_logit(score))
            heats.append(heat)
        return np.array(logits), heats, inks

    def fit_heads(self, cfg: Config, model: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
        """Fields head and glyph-novelty tail on train; fusion, novelty gate and threshold on
        validation; all stored in the weights."""
        d: DocDataConfig = cfg.data  # type: ignore[assignment]
        ocr = self.ocr_results(cfg)
        train, val = self.documents(cfg, "train"), self.documents(cfg, "val")
        with torch.inference_mode():
            # The CNN's train scores would be biased: only pixel features on train.
            ink_train = _inks(self.raw_dir(cfg), train, ocr, d.ocr_workers)
            img_val, _, ink_val = self._page_scores(cfg, model, meta, val, ocr)
        y_train = np.array([x.label == "forged" for x in train], dtype=int)
        # How far each page's pixel statistics sit from those of authentic training pages of
        # its layout: a stamp moved, missing or in other ink is far in some direction, which
        # a linear weight on the raw statistic cannot express.
        authentic = [ocr[x.path].layout for x, y in zip(train, y_train, strict=True) if y == 0]
        profile = None
        if len(authentic) >= PROFILE_MIN_PAGES:
            profile = heads.fit_profile(
                ink_train[y_train == 0], authentic, PIXEL_FEATURE_NAMES, PROFILE_MIN_PAGES
            )
        else:
            log.warning(
                "%d authentic training pages (< %d): no authentic-profile deviation features",
                len(authentic),
                PROFILE_MIN_PAGES,
            )
        x_train, names = field_matrix([ocr[x.path] for x in train], ink_train, profile)
        kinds = [
            (x.forgery_type or heads.ANY_KIND) if y else ""
            for x, y in zip(train, y_train, strict=True)
        ]
        fields_head = heads.fit_experts(
            x_train,
            kinds,
            names,
            c=d.fields_c,
            nonneg=[n for n in names if n in suspicion(profile)],
        )
        # Novelty is profiled on authentic pages only: it needs no example of an edit.
        novel = [names.index(n) for n in NOVELTY_FEATURES]
        tail = heads.fit_tail(
            x_train[y_train == 0][:, novel], NOVELTY_FEATURES, d.novelty_quantile, d.novelty_top
        )
        x_val, _ = field_matrix([ocr[x.path] for x in val], ink_val, profile)
        fields_val = heads.expert_logit(fields_head, x_val)
        y_val = np.array([x.label == "forged" for x in val], dtype=int)
        fusion = heads.fit_logistic(
            np.stack([img_val, fields_val], axis=1), y_val, ["image_logit", "fields_logit"]
        )
        fused_val = heads.logit(fusion, np.stack([img_val, fields_val], axis=1))
        nov_val = heads.novelty(tail, x_val[:, novel])
        gate = {
            "z": d.novelty_gate,
            "fused": heads.robust_scale(fused_val[y_val == 0]),
            "novelty": heads.robust_scale(nov_val[y_val == 0]),
        }
        final_val = heads.add_novelty(fused_val, nov_val, gate)
        threshold = heads.threshold_at_fpr(final_val[y_val == 0], d.max_fpr)
        return {
            "heads": {
                "profile": profile,
                "fields": fields_head,
                "fusion": fusion,
                "tail": tail,
                "gate": gate,
                "threshold": threshold,
                "max_fpr": d.max_fpr,
            }
        }

    # -- evaluation ---------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(
        self, cfg: Config, model: nn.Module, meta: dict[str, Any], out_dir: Path
    ) -> dict[str, Any]:
        from usecases.doc_fraud.ocr import failed_rules, field_accuracy, summarise_accuracy

        test = self.documents(cfg, "test")
        ocr = self.ocr_results(cfg)
        img, heats, inks = self._page_scores(cfg, model, meta, test, ocr)
        h = meta["heads"]
        x, names = field_matrix([ocr[x.path] for x in test], inks, h.get("profile"))
        s = scores(h, img, x, names)
        flagged = s["final"] > h["threshold"]
        holdout = read_summary_holdout(self.processed_dir(cfg))
        metrics = detection_metrics(test, img, s, flagged, holdout)
        metrics["max_fpr"] = h["max_fpr"]  # the operating point chosen on validation
        accuracy = [
            field_accuracy(ocr[x.path].fields, x.fields)
            for x in test
            if x.label == "authentic" and x.fields
        ]
        if accuracy:
            metrics["ocr"] = summarise_accuracy(accuracy)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(
            [
                "path",
                "label",
                "forgery_type",
                "layout",
                "name_origin",
                "image_logit",
                "fields_logit",
                "novelty",
                "score",
                "flagged",
                "failed_rules",
            ]
        )
        rows = zip(test, img, s["fields"], s["novelty"], s["final"], flagged, strict=True)
        for doc, a, b, n, final, f in rows:
            w.writerow(
                [
                    doc.path,
                    doc.label,
                    doc.forgery_type,
                    doc.layout,
                    doc.name_origin,
                    f"{a:.4f}",
                    f"{b:.4f}",
                    f"{n:.4f}",
                    f"{heads.sigmoid(final):.6f}",
                    int(f),
                    " ".join(failed_rules(ocr[doc.path])),
                ]
            )
        write_text(out_dir / "predictions.csv", buf.getvalue())
        write_json(
            out_dir / "heatmaps.json",
            {doc.path: np.round(hm, 4).tolist() for doc, hm in zip(test, heats, strict=True)},
        )
        return metrics

    def example_inputs(self, cfg: Config, meta: dict[str, Any], n: int) -> torch.Tensor:
        from usecases.doc_fraud.tiles import TileDataset

        pages = self._pages(cfg, "test")[:1]
        ds = TileDataset(
            pages,
            tile=meta["image_size"],
            stride=meta["stride"],
            mean=meta["mean"],
            std=meta["std"],
            train=False,
            seed=0,
            negatives_per_page=0,
        )
        return torch.stack([ds[i][0] for i in range(min(n, len(ds)))])

    def card_sections(self, metrics: dict[str, Any]) -> str:
        def table(title: str, groups: dict[str, Any]) -> str:
            rows = "\n".join(
                f"| {g} | {v['n']} | {_pct(v['false_positive_rate'])} | {_pct(v['miss_rate'])} |"
                for g, v in groups.items()
            )
            return f"| {title} | documents | false alarms | missed forgeries |\n|---|---|---|---|\n{rows}\n"

        per_type = "\n".join(
            f"| {t} | {_pct(r)} |{' held out of training' if t == metrics.get('holdout_type') else ''}"
            for t, r in metrics.get("recall_per_type", {}).items()
        )
        ocr = metrics.get("ocr", {})
        ocr_line = (
            f"OCR field exact match on authentic test scans: {_pct(ocr.get('overall'))}.\n"
            if isinstance(ocr, dict) and "overall" in ocr
            else ""
        )
        holdout = metrics.get("holdout_type")
        novelty_line = (
            f"Test AUROC on the kinds seen in training: {metrics['auroc']} "
            f"({metrics['auroc_without_novelty']} without the glyph-novelty term); on the kind "
            f"held out of training (`{holdout}`): {metrics['auroc_holdout']} "
            f"({metrics['auroc_holdout_without_novelty']} without it).\n"
            if holdout and "auroc_holdout_without_novelty" in metrics
            else ""
        )
        return f"""
{novelty_line}
Recall per forgery kind at the operating threshold (set on validation at {_pct(metrics.get("max_fpr", 0.01))} false alarms):

| kind | recall |
|---|---|
{per_type}

{ocr_line}
## Responsible use
A score above the threshold means **send this document to a civil-status officer for
inspection against the register** — never "this document is forged", and never a refusal of
service by itself. Report the model's false-alarm rate to the people who act on its flags; keep
a human decision, a record of it and a way to contest it. Do not use it on documents or
populations it was not validated on. Error rates per layout and per name origin on the test
split (a difference between groups would reveal a bias; groups are small):

{table("layout", metrics.get("errors_per_layout", {}))}
{table("name origin", metrics.get("errors_per_name_origin", {}))}"""

    # -- prediction ---------------------------------------------------------------------------
    def describe(self, result: dict[str, Any]) -> str:
        fields = "; ".join(f"{k}={v}" for k, v in result["fields"].items() if v)
        checks = ", ".join(result["failed_checks"]) or "none"
        experts = result.get("experts") or {}
        like = ""
        if experts and len(experts) > 1:
            kind = max(experts, key=experts.get)
            like = f"\tmost like: {kind} ({experts[kind]:+.1f} spreads)"
        return (
            f"{result['input']}\t{result['verdict']}\tscore {result['score']:.4f} "
            f"(threshold {result['threshold']:.4f}){like}\tfailed checks: {checks}"
            f"\tfields: {fields}"
        )

    @torch.no_grad()
    def predict(
        self, model: nn.Module, meta: dict[str, Any], inputs: list[str]
    ) -> list[dict[str, Any]]:
        from usecases.doc_fraud.forensics import pixel_features
        from usecases.doc_fraud.ocr import (
            failed_rules,
            load_page,
            read_document,
        )
        from usecases.doc_fraud.tiles import score_page

        h = meta["heads"]
        model.eval()
        out = []
        for path in inputs:
            try:
                image, load_warnings = load_page(path)  # PDFs and huge scans get clear messages
                result = read_document(image)
                result.warnings = [*load_warnings, *result.warnings]
            except (ImageError, OSError, ValueError) as e:
                out.append({"input": path, "error": str(e)})
                continue
            prob, heat = score_page(
                model, image, meta["image_size"], meta["stride"], meta["mean"], meta["std"]
            )
            ink = pixel_features(image, result)
            row, names = field_matrix(
                [result], np.array([[ink[n] for n in PIXEL_FEATURE_NAMES]]), h.get("profile")
            )
            every = scores(h, [heads.prob_to_logit(prob)], row, names)
            s = {k: float(v[0]) for k, v in every.items() if k != "experts"}
            kinds = dict(
                zip(heads.expert_kinds(h["fields"]), every["experts"][0].tolist(), strict=True)
            )
            failed = failed_rules(result)
            no_text = result.n_words == 0
            flagged = s["final"] > h["threshold"] or no_text
            verdict = (
                "not readable as a certificate: inspect"
                if no_text
                else "probably forged: inspect"
                if flagged
                else "no forgery detected"
            )
            r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
            out.append(
                {
                    "input": path,
                    "verdict": verdict,
                    "score": round(float(heads.sigmoid(s["final"])), 6),
                    "threshold": round(float(heads.sigmoid(h["threshold"])), 6),
                    "image_score": round(prob, 6),
                    "fields_score": round(float(heads.sigmoid(s["fields"])), 6),
                    "novelty": round(s["novelty"], 4),
                    # Each per-kind expert's log-odds, in robust spreads of authentic pages.
                    "experts": {k: round(v, 3) for k, v in kinds.items()},
                    "failed_checks": failed,
                    "fields": result.fields,
                    "layout": result.layout,
                    "most_suspicious_tile": {
                        "row": int(r),
                        "col": int(c),
                        "score": round(float(heat[r, c]), 4),
                    },
                    "warnings": list(result.warnings),
                }
            )
        return out


def scores(
    h: dict[str, Any], image_logit: Any, x: np.ndarray, names: list[str]
) -> dict[str, np.ndarray]:
    """Every score of the fitted heads `h` for pages with image log-odds `image_logit` [n] and
    fields-head rows `x` [n, names]: fields log-odds, their fusion with the image's, the
    glyph novelty, and the final log-odds (fusion raised by novelty beyond its gate)."""
    image_logit = np.asarray(image_logit, dtype=np.float64)
    experts = heads.expert_logits(h["fields"], x)
    fields = experts.max(axis=1)
    fused = heads.logit(h["fusion"], np.stack([image_logit, fields], axis=1))
    tail = h["tail"]
    novel = [names.index(n) for n in tail["names"]]
    nov = heads.novelty(tail, np.atleast_2d(x)[:, novel])
    final = heads.add_novelty(fused, nov, h["gate"])
    return {
        "fields": fields,
        "experts": experts,
        "fused": fused,
        "novelty": nov,
        "final": final,
    }


def suspicion(profile: dict[str, Any] | None) -> set[str]:
    """Fields-head inputs that may only weigh positively (see heads.fit_logistic)."""
    return {*SUSPICION_FEATURES, *(profile["names"] if profile else ())}


def field_matrix(
    results: list[Any],
    inks: np.ndarray,
    profile: dict[str, Any] | None,
    pixel_names: Sequence[str] = PIXEL_FEATURE_NAMES,
) -> tuple[np.ndarray, list[str]]:
    """The fields head's rows for OCR results and their pixel features (`pixel_names`, in that
    order): reading, rule and geometry features, pixel features, and (with a profile) each
    pixel feature's deviation from the authentic pages of the layout read."""
    from usecases.doc_fraud.ocr import FEATURE_NAMES, features

    inks = np.asarray(inks, dtype=np.float64).reshape(len(results), len(pixel_names))
    rows = []
    for r, ink in zip(results, inks.tolist(), strict=True):
        f = features(r)  # once per page, not once per feature name
        rows.append([*(f[n] for n in FEATURE_NAMES), *ink])
    x = np.array(rows, dtype=np.float64).reshape(len(results), -1)
    names = [*FEATURE_NAMES, *pixel_names]
    if profile:
        dev = heads.deviations(profile, inks, [r.layout for r in results])
        x = np.hstack([x, dev])
        names += profile["names"]
    return x, names


def _inks(raw: Path, docs: list[Document], ocr: dict[str, Any], workers: int = 0) -> np.ndarray:
    """Pixel features [n, k] of documents of the corpus, over `workers` processes."""
    from usecases.doc_fraud.forensics import pixel_rows

    return pixel_rows([(str(raw / x.path), ocr.get(x.path)) for x in docs], workers)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def read_summary_holdout(processed: Path) -> str | None:
    path = processed / SUMMARY
    return (
        json.loads(path.read_text(encoding="utf-8")).get("holdout_type") if path.is_file() else None
    )


def _splits(
    docs: list[Document], val_fraction: float, test_fraction: float, seed: int
) -> list[Document]:
    """Keep published splits; draw missing ones (stratified by label, seeded) with the core."""
    if all(x.split for x in docs):
        return docs
    items = [Item(x.path, x.label, x.split or "train", "") for x in docs]
    by_path = {x.path: x for x in docs}
    for it in make_splits(items, val_fraction, test_fraction, seed):
        by_path[it.path].split = it.split
    return [by_path[x.path] for x in docs]


def _limit(docs: list[Document], per_class: int | None) -> list[Document]:
    if per_class is None:
        return docs
    seen: Counter = Counter()
    out = []
    for x in sorted(docs, key=lambda x: x.path):
        key = (x.split, x.label)
        if seen[key] < per_class:
            seen[key] += 1
            out.append(x)
    return out


def _ocr_all(raw: Path, docs: list[Document], workers: int) -> dict[str, Any]:
    """OCR every document; Tesseract runs as a subprocess, so threads give real parallelism."""
    from usecases.doc_fraud.ocr import read_document

    workers = workers or (os.cpu_count() or 1)

    def one(doc: Document):
        reading = read_document(raw / doc.path, layout=doc.layout or None).to_json()
        reading.pop("seconds")  # wall time is not data: ocr.jsonl stays byte-identical per run
        return doc.path, reading

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(pool.map(one, docs))


def recall_at_fpr(y: np.ndarray, s: np.ndarray, max_fpr: float) -> float:
    """Best true-positive rate on the ROC curve with false-positive rate <= max_fpr."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, s)
    ok = fpr <= max_fpr + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def detection_metrics(
    docs: list[Document],
    image_logit: np.ndarray,
    s: dict[str, np.ndarray],
    flagged: np.ndarray,
    holdout: str | None,
) -> dict[str, Any]:
    """Test-split detection figures from `scores(...)`: seen forgery types, the held-out type,
    per type, per layout and per name origin (the operating threshold was chosen on
    validation). Each detector alone, and the fusion without novelty, are scored beside."""
    from sklearn.metrics import roc_auc_score

    label = np.array([x.label == "forged" for x in docs])
    kind = np.array([x.forgery_type for x in docs])
    seen = ~label | (kind != (holdout or "\0"))
    m: dict[str, Any] = {"n": len(docs), "holdout_type": holdout}

    def auroc(mask, s):
        y = label[mask]
        return round(float(roc_auc_score(y, s[mask])), 6) if 0 < y.sum() < len(y) else None

    fused = s["final"]
    m["auroc"] = auroc(seen, fused)
    m["recall_at_1pct_fpr"] = round(recall_at_fpr(label[seen], fused[seen], 0.01), 6)
    m["auroc_image_only"] = auroc(seen, image_logit)
    m["auroc_fields_only"] = auroc(seen, s["fields"])
    m["auroc_without_novelty"] = auroc(seen, s["fused"])
    m["auroc_novelty_only"] = auroc(seen, s["novelty"])
    if holdout:
        m["auroc_holdout"] = auroc(~label | (kind == holdout), fused)
        m["auroc_holdout_without_novelty"] = auroc(~label | (kind == holdout), s["fused"])
    auth = ~label
    # At the validation threshold; the core writes it to confusion.csv / confusion_matrix.json.
    m["confusion_matrix"] = {
        "labels": ["authentic", "forged"],
        "matrix": [
            [int((auth & ~flagged).sum()), int((auth & flagged).sum())],
            [int((label & ~flagged).sum()), int((label & flagged).sum())],
        ],
    }
    m["false_positive_rate"] = round(float(flagged[auth].mean()), 6) if auth.any() else None
    m["recall_per_type"] = {
        t: round(float(flagged[label & (kind == t)].mean()), 6)
        for t in sorted(set(kind[label].tolist()))
    }
    m["auroc_per_type"] = {
        t: auroc(~label | (kind == t), fused) for t in sorted(set(kind[label].tolist()))
    }
    for attr in ("layout", "name_origin"):
        values = np.array([getattr(x, attr) for x in docs])
        m[f"errors_per_{attr}"] = {
            v: {
                "false_positive_rate": round(float(flagged[auth & (values == v)].mean()), 6)
                if (auth & (values == v)).any()
                else None,
                "miss_rate": round(float(1 - flagged[label & (values == v)].mean()), 6)
                if (label & (values == v)).any()
                else None,
                "n": int((values == v).sum()),
            }
            for v in sorted(set(values.tolist()))
        }
    return m
