"""Classification metrics with scikit-learn, in the `metrics.json` layout `blurnet report` writes."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from data_pipeline.classes import CLASS_NAMES


def classification_metrics(y_true, probabilities, classes: tuple[str, ...] = CLASS_NAMES, present: list[int] | None = None) -> dict:
    """`accuracy`, `macro_f1`, `classes`, `confusion_matrix` (rows true), `per_class`, `n_images`.

    `present` lists the class indices that occur in the data (default: all);
    per-class metrics and macro-F1 cover only those.
    """
    y_true = np.asarray(y_true).astype(int)
    probabilities = np.asarray(probabilities, np.float64)
    if probabilities.ndim != 2 or probabilities.shape != (len(y_true), len(classes)):
        raise ValueError(f"probabilities must have shape ({len(y_true)}, {len(classes)}), got {probabilities.shape!r}.")
    y_pred = probabilities.argmax(axis=1)
    labels = list(range(len(classes)))
    present = sorted(set(y_true.tolist())) if present is None else present
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=present, zero_division=0)
    row_sums = cm.sum(axis=1, keepdims=True)
    return {
        "accuracy": float((y_pred == y_true).mean()),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "classes": list(classes),
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_normalized": np.divide(cm, row_sums, out=np.zeros(cm.shape), where=row_sums > 0).round(4).tolist(),
        "per_class": {
            classes[c]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(present)
        },
        "n_images": int(len(y_true)),
    }
