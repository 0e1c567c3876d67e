"""Metrics, rounded so that equal results serialise to identical bytes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _r(x: float) -> float:
    return round(float(x), 6)


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]
) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(
            f"need equal, non-empty label arrays; got {y_true.shape} and {y_pred.shape}"
        )
    idx = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=idx, zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=idx)
    return {
        "accuracy": _r((y_true == y_pred).mean()),
        "macro_f1": _r(f.mean()),
        "n": int(y_true.size),
        "per_class": {
            name: {"precision": _r(p[i]), "recall": _r(r[i]), "f1": _r(f[i]), "support": int(s[i])}
            for i, name in enumerate(labels)
        },
        "confusion_matrix": {"labels": list(labels), "matrix": cm.tolist()},
    }
