"""Classification metrics, calibration and accuracy per blur strength, in the `metrics.json` layout `blurnet report` writes."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from data_pipeline.classes import CLASS_NAMES, BlurRanges

ECE_BINS = 15
STRENGTH_BINS = 5


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


def expected_calibration_error(y_true, probabilities, n_bins: int = ECE_BINS) -> float:
    """ECE over `n_bins` equal-width bins of top-class confidence, bins `(lo, hi]`.

    Sum over bins of (bin share of images) x |accuracy - mean confidence|.
    """
    y_true = np.asarray(y_true, int)
    probabilities = np.asarray(probabilities, np.float64)
    if len(y_true) == 0:
        return 0.0
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y_true
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - confidence[sel].mean())
    return float(ece)


def accuracy_by_strength(y_true, y_pred, strengths, ranges: BlurRanges, n_bins: int = STRENGTH_BINS) -> dict:
    """For each blurred class, `n_bins` equal bins over its strength range: `edges`, `count`, `accuracy`.

    Accuracy in a bin is the share of that class's images predicted as that class
    (None for an empty bin). Strengths outside the range go to the end bins.
    """
    y_true, y_pred, strengths = np.asarray(y_true, int), np.asarray(y_pred, int), np.asarray(strengths, np.float64)
    out = {}
    for c, name in enumerate(CLASS_NAMES):
        span = ranges.strength_range(name)
        if span is None:
            continue
        edges = np.linspace(span[0], span[1], n_bins + 1)
        sel = y_true == c
        index = np.clip(np.digitize(strengths[sel], edges[1:-1]), 0, n_bins - 1)
        right = y_pred[sel] == c
        counts = [int((index == b).sum()) for b in range(n_bins)]
        accuracy = [float(right[index == b].mean()) if counts[b] else None for b in range(n_bins)]
        out[name] = {"edges": [round(float(e), 4) for e in edges], "count": counts, "accuracy": accuracy}
    return out


def method_row(name: str, y_true, probabilities, present, seconds: float, parameters=None, note=None) -> dict:
    """One row of the baselines table: accuracy, macro-F1, binary (sharp vs blurred) accuracy, recall per class,
    parameter count and images per second."""
    m = classification_metrics(y_true, probabilities, present=present)
    y_pred = np.asarray(probabilities).argmax(axis=1)
    y_true = np.asarray(y_true)
    binary = float(((y_pred == 0) == (y_true == 0)).mean())
    return {
        "name": name,
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "binary_accuracy": binary,
        "recall": {c: v["recall"] for c, v in m["per_class"].items()},
        "parameters": parameters,
        "images_per_s": len(y_true) / seconds if seconds > 0 else None,
        "note": note,
    }


def parameter_metrics(labels, params, raw) -> dict:
    """Blur-parameter errors of a parameter head's raw `(n, 5)` output against the true `params` `(n, 3)`
    (`(strength, angle, noise)`, NaN where unknown) of samples of class `labels`, each parameter over its own
    class's samples: `sigma_mae`, `length_mae`, `angle_mae_deg` (on the 180-degree circle), `radius_mae`,
    their 90th-percentile errors (`*_p90`), the sizes' mean signed errors (`*_bias`: above 0, read too
    strong), `sigma_r2`, `length_r2`, `radius_r2` and the sample counts (`*_n`). A parameter with no sample
    is left out."""
    from data_pipeline.parameters import PARAMETER_TARGETS, angle_degrees

    labels, params, raw = np.asarray(labels).astype(int), np.asarray(params, np.float64), np.asarray(raw, np.float64)
    column = {name: PARAMETER_TARGETS.index(name) for name in ("sigma", "length", "radius")}
    out = {}
    for name, class_name in (("sigma", "gaussian"), ("length", "motion"), ("radius", "defocus")):
        rows = (labels == CLASS_NAMES.index(class_name)) & np.isfinite(params[:, 0])
        if not rows.any():
            continue
        true, predicted = params[rows, 0], raw[rows, column[name]]
        error = np.abs(predicted - true)
        residual, spread = ((predicted - true) ** 2).sum(), ((true - true.mean()) ** 2).sum()
        out.update({f"{name}_mae": float(error.mean()), f"{name}_p90": float(np.percentile(error, 90)),
                    f"{name}_bias": float((predicted - true).mean()),
                    f"{name}_r2": float(1.0 - residual / spread) if spread > 0 else None, f"{name}_n": int(rows.sum())})
        if name == "length":
            angle = angle_degrees(raw[rows, PARAMETER_TARGETS.index("angle_cos")], raw[rows, PARAMETER_TARGETS.index("angle_sin")])
            difference = np.abs(angle - np.mod(params[rows, 1], 180.0))
            angle_error = np.minimum(difference, 180.0 - difference)
            out.update({"angle_mae_deg": float(angle_error.mean()), "angle_p90_deg": float(np.percentile(angle_error, 90))})
    return out
