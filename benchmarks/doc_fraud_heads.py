"""Fields-head variants of the document-fraud use case, compared by cross-validation on the
training and validation pages of the prepared corpus (the test split is never read).

    zoo fetch doc_fraud && zoo prepare doc_fraud     # once: data/processed/doc_fraud
    python benchmarks/doc_fraud_heads.py             # 5 folds x 3 seeds, 2 processes
    python benchmarks/doc_fraud_heads.py --seeds 1 --workers 1

Each fold fits what `DocFraud.fit_heads` fits on its training part (the authentic-page profile
per layout, then the head) and scores its held-out part; the table gives the AUROC of the pooled
held-out scores on the kinds seen in training (the held-out kind is left out, as in the test
metrics) and per kind against all authentic pages, averaged over the seeds. The folds are
stratified by kind. Rows:
  single C        one logistic regression over every feature (`single C=1 -stamp`: the form of
                  the head before per-kind experts and stamp features, on today's other features)
  experts C       one logistic regression per kind, scaled on authentic pages, max over kinds
  ... -render     the same without the render-and-compare digit features (`glyphfit`)
  ... -ring       the same without the stamp-ring features (`tiles.stamp_ring`)
  ... -blur       the same without the stamp circle's blur against the print's
                  (`forensics.stamp_blur_excess`)
  ... -stamp      the same without any stamp feature of `tiles.INK_FEATURE_NAMES` (blob and ring)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from usecases.doc_fraud import heads  # noqa: E402
from usecases.doc_fraud.data import DOCUMENTS, read_documents  # noqa: E402
from usecases.doc_fraud.forensics import PIXEL_FEATURE_NAMES, pixel_rows  # noqa: E402
from usecases.doc_fraud.ocr import OcrResult  # noqa: E402
from usecases.doc_fraud.task import OCR_FILE, field_matrix, suspicion  # noqa: E402

RING = tuple(n for n in PIXEL_FEATURE_NAMES if n.startswith("ring_"))
RENDER = tuple(n for n in PIXEL_FEATURE_NAMES if n.startswith("render_"))
STAMP = (*(n for n in PIXEL_FEATURE_NAMES if n.startswith("stamp_") or n == "stray_light"), *RING)


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if len(set(y.tolist())) == 2 else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--raw", default="data/raw/doc_fraud")
    ap.add_argument("--processed", default="data/processed/doc_fraud")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    from sklearn.model_selection import StratifiedKFold

    raw, processed = Path(args.raw), Path(args.processed)
    for need in (processed / DOCUMENTS, processed / OCR_FILE):
        if not need.is_file():
            sys.exit(f"{need}: not found; run `zoo fetch doc_fraud && zoo prepare doc_fraud`")
    docs = [d for d in read_documents(processed / DOCUMENTS) if d.split in ("train", "val")]
    readings = {}
    with open(processed / OCR_FILE, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            readings[row["path"]] = row["ocr"]
    inks = pixel_rows([(str(raw / d.path), readings[d.path]) for d in docs], max(1, args.workers))
    results = [OcrResult.from_json(readings[d.path]) for d in docs]
    kinds = np.array([(d.forgery_type or "forged") if d.label == "forged" else "" for d in docs])
    y = (kinds != "").astype(int)
    layouts = [r.layout for r in results]
    seen = sorted(set(kinds.tolist()) - {""})
    counts = {k or "authentic": int((kinds == k).sum()) for k in ["", *seen]}
    print(f"{len(docs)} pages (train + val): {counts}")

    def variant(experts: bool, c: float, drop: tuple[str, ...]) -> dict[str, float]:
        keep_pixel = [i for i, n in enumerate(PIXEL_FEATURE_NAMES) if n not in drop]
        names_pixel = [PIXEL_FEATURE_NAMES[i] for i in keep_pixel]
        runs = []
        for seed in range(args.seeds):
            s = np.zeros(len(y))
            folds = StratifiedKFold(args.folds, shuffle=True, random_state=seed)
            for tr, te in folds.split(inks, kinds):
                auth = tr[y[tr] == 0]
                x_all = inks[:, keep_pixel]
                profile = heads.fit_profile(x_all[auth], [layouts[i] for i in auth], names_pixel)
                x_tr, names = field_matrix(
                    [results[i] for i in tr], x_all[tr], profile, names_pixel
                )
                x_te, _ = field_matrix([results[i] for i in te], x_all[te], profile, names_pixel)
                nonneg = [n for n in names if n in suspicion(profile)]
                if experts:
                    head = heads.fit_experts(x_tr, kinds[tr].tolist(), names, c=c, nonneg=nonneg)
                    s[te] = heads.expert_logit(head, x_te)
                else:
                    head = heads.fit_logistic(x_tr, y[tr], names, c=c, nonneg=nonneg)
                    s[te] = heads.logit(head, x_te)
            run = {"seen": _auroc(y, s)}
            for k in seen:
                sel = (kinds == "") | (kinds == k)
                run[k] = _auroc(y[sel], s[sel])
            runs.append(run)
        return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}

    rows = [
        ("single C=1 -stamp", False, 1.0, STAMP),
        ("single C=1", False, 1.0, ()),
        ("single C=0.1", False, 0.1, ()),
        ("experts C=1", True, 1.0, ()),
        ("experts C=0.1", True, 0.1, ()),
        ("experts C=0.1 -render", True, 0.1, RENDER),
        ("experts C=0.1 -ring", True, 0.1, RING),
        ("experts C=0.1 -blur", True, 0.1, ("stamp_blur_excess",)),
        ("experts C=0.1 -stamp", True, 0.1, STAMP),
    ]
    cols = ["seen", *seen]
    print(f"\n{'head':<22}" + "".join(f"{c:>14}" for c in cols))
    for name, experts, c, drop in rows:
        r = variant(experts, c, drop)
        print(f"{name:<22}" + "".join(f"{r[k]:>14.3f}" for k in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
