"""The baselines table of `blurnet report`: the Laplacian and handcrafted-feature rows, and its Markdown.

The classifiers themselves are in `blurnet.baselines`; here they are tuned or
trained on the bundled photographs' validation / training streams and scored on
the report's test images.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from blurnet.atomic import atomic_directory
from blurnet.baselines import HandcraftedClassifier, LaplacianThreshold, laplacian_variance
from blurnet.evaluate import EvalSource, Evaluation, bundled_split_makers, stream_images
from blurnet.metrics import accuracy_by_strength, method_row
from data_pipeline.classes import CLASS_NAMES, BlurRanges


def laplacian_row(source: EvalSource, result: Evaluation, baseline_images: int, ranges: BlurRanges):
    """The Laplacian-threshold row and its accuracy per strength (None without strengths).

    The threshold is chosen on the validation stream when there is one, else on these same images.
    Raises `ValueError` when it cannot be fitted.
    """
    lap, scores, y_true = LaplacianThreshold(), np.asarray(result.laplacian_scores), result.y_true
    if source.val_maker is not None:
        vx, vy, _ = stream_images(source.val_maker, baseline_images)
        lap.fit([laplacian_variance(im) for im in vx], vy != 0, method="best")
        how = f"threshold {{t:.1f}} chosen on {len(vy)} images of the validation stream"
    else:
        lap.fit(scores, y_true != 0, method="medians")
        how = "threshold {t:.1f} = midpoint of the sharp and blurred medians of these same images (optimistic)"
    called = lap.predict_blurred(scores)
    binary_right = called == (y_true != 0)
    row = {
        "name": LaplacianThreshold.name, "accuracy": None, "macro_f1": None,
        "binary_accuracy": float(binary_right.mean()),
        "recall": {CLASS_NAMES[c]: float(binary_right[y_true == c].mean()) for c in result.present},
        "parameters": 1, "images_per_s": len(scores) / result.laplacian_seconds if result.laplacian_seconds > 0 else None,
        "threshold": lap.threshold,
        "note": how.format(t=lap.threshold) + "; sharp vs blurred only, 'recall' = share called right",
    }
    by_strength = None
    if source.has_params and result.strengths is not None:
        by_strength = accuracy_by_strength(y_true, np.where(called, y_true, 0), result.strengths, ranges)
    return row, by_strength


def handcrafted_row(source: EvalSource, result: Evaluation, baseline_images: int, image_size: int,
                    ranges: BlurRanges, seed: int, batch_size: int) -> dict:
    """The handcrafted-feature classifier's row, trained on `baseline_images` crops of the training stream.

    Raises `ValueError` or `FileNotFoundError` when it cannot be trained.
    """
    train_maker = source.train_maker or bundled_split_makers(image_size, ranges, seed, batch_size, ("train",))[0]["train"]
    tx, ty, _ = stream_images(train_maker, baseline_images)
    clf = HandcraftedClassifier(seed=seed).fit(tx, ty)
    t0 = time.perf_counter()
    hp = clf.predict_proba_features(np.stack(result.features))
    seconds = result.feature_seconds + time.perf_counter() - t0
    return method_row(
        HandcraftedClassifier.name, result.y_true, hp, result.present, seconds, clf.num_parameters,
        note=f"trained on {len(ty)} crops of the training stream of the bundled photographs; parameters = tree nodes",
    )


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_baselines(metrics: dict) -> str:
    """The baselines section: every method on the same test images, one table."""
    classes = metrics["classes"]
    lines = [
        "## Baselines",
        "",
        f"All on the same {metrics['n_images']} test images ({metrics['data']['source']}"
        + (f", then JPEG-compressed at quality {metrics['data']['jpeg_quality']}" if metrics["data"].get("jpeg_quality") else "")
        + "). Accuracy over all of them, macro-F1 over the classes in their labels ("
        + ", ".join(metrics["data"].get("classes_present") or classes)
        + "); binary accuracy counts sharp called sharp and any blur called blurred.",
        "",
        "| method | accuracy | macro-F1 | binary accuracy | " + " | ".join(f"recall {c}" for c in classes) + " | parameters | images/s |",
        "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in classes) + " | ---: | ---: |",
    ]
    for b in metrics["baselines"]:
        recalls = " | ".join(_fmt((b.get("recall") or {}).get(c)) for c in classes)
        lines.append(
            f"| {b['name']} | {_fmt(b.get('accuracy'))} | {_fmt(b.get('macro_f1'))} | {_fmt(b.get('binary_accuracy'))} | "
            f"{recalls} | {_fmt(b.get('parameters'))} | {_fmt(b.get('images_per_s'), 1)} |"
        )
    for b in metrics["baselines"]:
        if b.get("note"):
            lines.append(f"\n- {b['name']}: {b['note']}")
    return "\n".join(lines) + "\n"


def write_baseline_comparison(report_dir, out_dir) -> Path:
    """Copy a report's baseline comparison to `out_dir`: `README.md` (the table) and `baselines.json`."""
    metrics = json.loads((Path(report_dir) / "metrics.json").read_text())
    with atomic_directory(out_dir, "baselines.json") as tmp:
        (tmp / "README.md").write_text(f"# Baselines beside {metrics['model']['name']}\n\n" + render_baselines(metrics)
                                       + f"\nFrom `blurnet report`; full report: `{Path(report_dir).as_posix()}/index.md`.\n")
        (tmp / "baselines.json").write_text(json.dumps({"data": metrics["data"], "baselines": metrics["baselines"]}, indent=2) + "\n")
    return Path(out_dir)
