"""`blurnet report`: metrics, plots and baselines of an exported model, in one folder.

`write_report` evaluates an export on the held-out test stream of the bundled
photographs (default: fixed seed, balanced, identical every run, blur parameters
known) or on a labelled folder `DIR/<class>/<file>`, and writes `metrics.json`,
PNG plots and an `index.md` that shows them. The folder is written in a hidden
temporary folder beside the target and renamed into place at the end, so an
interrupted report never leaves a half-written one.
"""
from __future__ import annotations

import csv
import dataclasses
import heapq
import json
import sys
import time
from pathlib import Path

import numpy as np

from blurnet.atomic import atomic_directory
from blurnet.baselines import HandcraftedClassifier, LaplacianThreshold, handcrafted_features, laplacian_variance
from blurnet.metrics import classification_metrics
from data_pipeline.augment import check_jpeg_quality, jpeg_roundtrip
from data_pipeline.classes import CLASS_NAMES, MIN_IMAGE_SIDE, BlurRanges
from data_pipeline.degrade import PsfFamilies

ECE_BINS = 15
STRENGTH_BINS = 5
MAX_MISCLASSIFIED = 16
PLOTS = ("confusion_matrix.png", "training_curves.png", "accuracy_vs_strength.png", "misclassified.png", "psf_gallery.png")


# ----------------------------------------------------------------------------- metrics


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


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass
class EvalSource:
    """What to evaluate: an iterator of `(images, labels, params or None, paths or None)` chunks."""

    chunks: object
    total: int
    present: list[int]
    description: dict
    has_params: bool
    val_maker: object = None
    train_maker: object = None


def bundled_split_makers(image_size: int, ranges: BlurRanges, seed: int, batch_size: int, splits=("train", "val", "test"),
                         families: PsfFamilies = PsfFamilies.classic()):
    """Batch makers over the bundled photographs' splits (by photograph, from `seed`), and the split itself.

    `families`: the PSF families drawn (default: the classic straight streaks and uniform disks, so that held-out
    figures stay comparable between models; `PsfFamilies()` is the training mix).
    """
    from data_pipeline.dataset import BlurBatchMaker, PipelineConfig
    from data_pipeline.sources import load_photographs, split_photographs

    photos = split_photographs(load_photographs(None, min_size=image_size), seed=seed)
    config = PipelineConfig(image_size=image_size, batch_size=batch_size, seed=seed, ranges=ranges, families=families)
    return {s: BlurBatchMaker(photos[s], config, s) for s in splits}, photos


def generated_test_source(image_size: int, ranges: BlurRanges, num_images: int, seed: int, batch_size: int,
                          families: PsfFamilies = PsfFamilies.classic()) -> EvalSource:
    """The default evaluation data: the held-out test split of the bundled photographs, blurred by the pipeline
    with the PSF `families` (default: the classic shapes)."""
    makers, splits = bundled_split_makers(image_size, ranges, seed, batch_size, families=families)
    num_batches = -(-num_images // batch_size)

    def chunks():
        for images, labels, params in makers["test"].dataset(num_batches=num_batches, with_params=True).as_numpy_iterator():
            yield images, labels, params, None

    description = {
        "source": "generated: held-out test split of the bundled photographs, blurred by the pipeline",
        "photographs": makers["test"].photo_names,
        "left_out": makers["test"].left_out,
        "image_size": image_size,
        "seed": seed,
        "batch_size": batch_size,
        "n_images": num_batches * batch_size,
        "blur_ranges": ranges.to_dict(),
        "psf_families": families.to_dict(),
    }
    return EvalSource(chunks(), num_batches * batch_size, list(range(len(CLASS_NAMES))), description, True, makers["val"], makers["train"])


def _labelled_source(folder, batch_size: int) -> EvalSource:
    from data_pipeline.labelled import load_labelled_images

    images, labels, paths = load_labelled_images(folder, min_size=MIN_IMAGE_SIDE)
    present = sorted(set(labels.tolist()))
    missing = [CLASS_NAMES[c] for c in range(len(CLASS_NAMES)) if c not in present]
    if missing:
        print(f"warning: no usable image of class(es) {', '.join(missing)}: left out of per-class metrics", file=sys.stderr)
    groups: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(image.shape, []).append(i)

    def chunks():
        for indices in groups.values():
            for start in range(0, len(indices), batch_size):
                idx = indices[start : start + batch_size]
                yield np.stack([images[i] for i in idx]).astype(np.float32), labels[idx], None, [paths[i] for i in idx]

    description = {
        "source": f"labelled folder {folder}",
        "n_images": len(images),
        "classes_present": [CLASS_NAMES[c] for c in present],
        "classes_missing": missing,
    }
    return EvalSource(chunks(), len(images), present, description, False)


def _stream_images(maker, num_images: int):
    """Images, labels, strengths of the first batches of a batch maker."""
    xs, ys, ps = [], [], []
    for i in range(-(-num_images // maker.config.batch_size)):
        x, y, p = maker.make_batch(i)
        xs.append(x), ys.append(y), ps.append(p)
    return np.concatenate(xs)[:num_images], np.concatenate(ys)[:num_images], np.concatenate(ps)[:num_images]


# ----------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(metrics: dict, path: Path) -> None:
    """Counts and row-normalised confusion matrices side by side (sklearn ConfusionMatrixDisplay)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for ax, key, fmt, title in (
        (axes[0], "confusion_matrix", "d", "counts"),
        (axes[1], "confusion_matrix_normalized", ".2f", "row-normalised (recall on the diagonal)"),
    ):
        ConfusionMatrixDisplay(np.asarray(metrics[key]), display_labels=metrics["classes"]).plot(
            ax=ax, values_format=fmt, colorbar=False, cmap="Blues"
        )
        ax.set_title(title)
    fig.suptitle(f"accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}, {metrics['n_images']} images")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def read_training_log(path: Path) -> dict[str, list[float]] | None:
    """Columns of a keras CSVLogger file as float lists (rows that do not parse are skipped)."""
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns: dict[str, list[float]] = {}
    for row in rows:
        try:
            values = {k: float(v) for k, v in row.items() if k and v not in (None, "")}
        except ValueError:
            continue
        for k, v in values.items():
            columns.setdefault(k, []).append(v)
    return columns if columns else None


def plot_training_curves(log: dict[str, list[float]], path: Path) -> None:
    """Accuracy and loss per epoch, training and validation."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key in zip(axes, ("accuracy", "loss")):
        for name, style in ((key, "-"), (f"val_{key}", "--")):
            if name in log:
                ax.plot(np.arange(1, len(log[name]) + 1), log[name], style, marker="o", label=name)
        ax.set_xlabel("epoch (row of the log)")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _note_figure(path: Path, text: str, size: tuple[float, float]) -> None:
    """A PNG holding only a line of text, where a plot has nothing to show."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=size)
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_accuracy_vs_strength(by_strength: dict | None, path: Path, baseline: dict | None = None) -> None:
    """Accuracy per strength bin, one panel per blurred class (a note when parameters are unknown)."""
    plt = _plt()
    if not by_strength:
        _note_figure(path, "blur strengths unknown for this data\n(labelled folder): no accuracy per strength", (6, 2))
        return
    fig, axes = plt.subplots(1, len(by_strength), figsize=(4.2 * len(by_strength), 3.8), squeeze=False)
    from data_pipeline.classes import STRENGTH_PARAMETER

    for ax, (name, entry) in zip(axes[0], by_strength.items()):
        edges = np.asarray(entry["edges"])
        centres = (edges[:-1] + edges[1:]) / 2
        acc = [np.nan if a is None else a for a in entry["accuracy"]]
        ax.plot(centres, acc, "o-", label="blurnet: right class")
        if baseline and name in baseline:
            b = [np.nan if a is None else a for a in baseline[name]["accuracy"]]
            ax.plot(centres, b, "s--", label="Laplacian: called blurred")
        for x, n in zip(centres, entry["count"]):
            ax.annotate(f"n={n}", (x, 0.02), ha="center", fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_xticks(edges)
        ax.set_xlabel(f"{STRENGTH_PARAMETER[name]} (px)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(fontsize=8, loc="lower left", bbox_to_anchor=(0, 0.08))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_misclassified(errors: list[dict], path: Path) -> None:
    """Grid of the worst errors: image, true and predicted class, probability of the prediction."""
    plt = _plt()
    if not errors:
        _note_figure(path, "no misclassified image", (5, 1.5))
        return
    cols = min(4, len(errors))
    rows = -(-len(errors) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, e in zip(axes.ravel(), errors):
        ax.imshow(np.clip(e["image"], 0, 255).astype(np.uint8))
        title = f"true {e['true']}\npred {e['pred']} p={e['probability']:.2f}"
        if e.get("strength") is not None and e["true"] != "sharp":
            title += f"\nstrength {e['strength']:.1f}"
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_psf_gallery(ranges: BlurRanges, path: Path) -> None:
    """PSFs of each class at low, mid and high strength of `ranges`, on a common pixel scale."""
    from data_pipeline.degrade import BlurParams, make_psf

    plt = _plt()
    cases = []
    for c, name in enumerate(CLASS_NAMES):
        span = ranges.strength_range(name)
        row = []
        for q, level in ((0.0, "low"), (0.5, "mid"), (1.0, "high")):
            strength = 0.0 if span is None else span[0] + q * (span[1] - span[0])
            row.append((level, strength, make_psf(BlurParams(c, strength, 30.0 if name == "motion" else 0.0, 0.0))))
        cases.append((name, row))
    size = max(k.shape[0] for _, row in cases for _, _, k in row)
    fig, axes = plt.subplots(len(cases), 3, figsize=(7.5, 2.4 * len(cases)), squeeze=False)
    for r, (name, row) in enumerate(cases):
        for col, (level, strength, kernel) in enumerate(row):
            pad = (size - kernel.shape[0]) // 2
            canvas = np.pad(kernel, pad)
            ax = axes[r][col]
            ax.imshow(canvas, cmap="magma", interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            label = "identity" if name == "sharp" else f"{strength:.1f} px" + (" @30°" if name == "motion" else "")
            ax.set_title(f"{name} {level}: {label}", fontsize=8)
    fig.suptitle(f"PSFs at a common scale ({size}x{size} px)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- index.md


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
        + "). Accuracy and macro-F1 "
        "over the four classes; binary accuracy counts sharp called sharp and any blur called blurred.",
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
    with atomic_directory(out_dir) as tmp:
        (tmp / "README.md").write_text(f"# Baselines beside {metrics['model']['name']}\n\n" + render_baselines(metrics)
                                       + f"\nFrom `blurnet report`; full report: `{Path(report_dir).as_posix()}/index.md`.\n")
        (tmp / "baselines.json").write_text(json.dumps({"data": metrics["data"], "baselines": metrics["baselines"]}, indent=2) + "\n")
    return Path(out_dir)


def render_index(metrics: dict, notes: list[str]) -> str:
    """The Markdown page: summary, metrics table, baselines table and every plot."""
    classes = metrics["classes"]
    model = metrics["model"]
    cm = np.asarray(metrics["confusion_matrix"])
    off = cm.copy()
    np.fill_diagonal(off, 0)
    worst = np.unravel_index(off.argmax(), off.shape)
    confusion = (
        f"The most frequent confusion is {classes[worst[0]]} taken for {classes[worst[1]]} ({off[worst]} images)."
        if off.max() > 0 else "No image is misclassified."
    )
    lap = next((b for b in metrics["baselines"] if b["name"].startswith("Laplacian")), None)
    lap_text = f" The Laplacian-variance baseline tells sharp from blurred with binary accuracy {lap['binary_accuracy']:.3f}." if lap and lap.get("binary_accuracy") is not None else ""
    lines = [
        f"# blurnet report: {model['name']}",
        "",
        f"On {metrics['n_images']} images ({metrics['data']['source']}), the {model.get('backbone')} model "
        f"(weights {model.get('weights')}, trained on {model.get('image_size')} px crops"
        + (f", answers averaged over {model['test_time_views']} flipped/rotated views" if model.get("test_time_views", 1) > 1 else "")
        + ") reaches accuracy "
        f"**{metrics['accuracy']:.3f}** and macro-F1 **{metrics['macro_f1']:.3f}**, with expected calibration error "
        f"{metrics['expected_calibration_error']:.3f}. {confusion}{lap_text}",
        "",
        "## Metrics per class",
        "",
        "| class | precision | recall | F1 | support |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, m in metrics["per_class"].items():
        lines.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    lines.append(f"| **all** | | accuracy {metrics['accuracy']:.3f} | macro {metrics['macro_f1']:.3f} | {metrics['n_images']} |")
    lines += ["", render_baselines(metrics)]
    lines += ["", "## Plots", ""]
    titles = {
        "confusion_matrix.png": "Confusion matrix",
        "training_curves.png": "Training curves",
        "accuracy_vs_strength.png": "Accuracy against blur strength",
        "misclassified.png": "Worst errors",
        "psf_gallery.png": "PSF gallery",
    }
    for plot in metrics["plots"]:
        lines += [f"### {titles.get(plot, plot)}", "", f"![{titles.get(plot, plot)}]({plot})", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["Full numbers: [metrics.json](metrics.json).", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- report


def _describe(meta: dict) -> str:
    """Backbone, plus the number of test-time views when the export averages several."""
    views = int(meta.get("test_time_views", 1))
    return f"{meta.get('backbone', '?')}" + (f", {views} views" if views > 1 else "")


def _num_parameters(model) -> int | None:
    try:
        return model.num_parameters
    except Exception:  # a stand-in model without a SavedModel folder
        return None


def _row(name: str, y_true, probabilities, present, seconds: float, parameters=None, note=None) -> dict:
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


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    import keras

    # A bar on a terminal; in a file or pipe, one line when done (no carriage returns or colour codes).
    verbose = 1 if getattr(sys.stdout, "isatty", lambda: False)() else 2
    return keras.utils.Progbar(total, unit_name="image", stateful_metrics=["accuracy"], verbose=verbose)


def default_out_dir(model_dir) -> Path:
    """`reports/<model folder name>/`."""
    return Path("reports") / Path(model_dir).resolve().name


def write_report(
    model_dir,
    data_dir=None,
    out_dir=None,
    num_images: int = 2048,
    seed: int | None = None,
    batch_size: int = 32,
    baselines: bool = True,
    baseline_images: int = 4096,
    progress: bool = True,
    model=None,
    compare=(),
    jpeg_quality: int | None = None,
) -> Path:
    """Evaluate an export and write `metrics.json`, the PNG plots and `index.md` to `out_dir`; returns `out_dir`.

    `data_dir=None` evaluates `num_images` (rounded up to whole batches) of the
    generated held-out test stream at the model's training crop size; otherwise a
    labelled folder `DIR/<class>/<file>`. `seed` defaults to the seed of the fit.
    `baseline_images` is the number of validation / training crops the baselines
    are tuned / trained on. `model` may be a loaded `ExportedModel` to reuse.
    `compare`: other exports (folders or loaded `ExportedModel`s, e.g. another
    backbone trained with `blurnet fit --backbone`) evaluated on the same images,
    each a row of the baselines table. `jpeg_quality` JPEG-compresses every test
    image at that quality before anything sees it (robustness to compression).
    Raises `NotAnExportError`, `FileNotFoundError` or `ValueError` with a clear message.
    """
    from blurnet.export import ExportedModel

    if num_images < 1:
        raise ValueError(f"--images must be >= 1, got {num_images!r}.")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size!r}.")
    model_dir = Path(model_dir)
    model = model if model is not None else ExportedModel(model_dir)
    meta = model.metadata
    image_size = int(meta.get("image_size", 128))
    ranges = BlurRanges.from_dict(meta["blur_ranges"]) if meta.get("blur_ranges") else BlurRanges()
    if seed is None:
        seed = int((meta.get("fit_config") or {}).get("seed") or 0)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(model_dir)
    others = [m if isinstance(m, ExportedModel) else ExportedModel(m) for m in compare]
    other_probs, other_seconds = [[] for _ in others], [0.0 for _ in others]
    source = (
        generated_test_source(image_size, ranges, num_images, seed, batch_size)
        if data_dir is None
        else _labelled_source(data_dir, batch_size)
    )

    # --- evaluate the model (and the per-image baseline inputs) chunk by chunk
    ys, probs, strengths, lap_scores, feats = [], [], [], [], []
    errors: list = []  # heap of (probability, counter, record) for the worst errors
    model_seconds, lap_seconds, feat_seconds, counter = 0.0, 0.0, 0.0, 0
    bar = _progress(source.total, progress)
    seen = right = 0
    if jpeg_quality is not None:
        check_jpeg_quality(jpeg_quality)  # a bad quality fails before any work
    for images, labels, params, paths in source.chunks:
        if jpeg_quality is not None:
            images = np.stack([jpeg_roundtrip(im, jpeg_quality) for im in images])
        t0 = time.perf_counter()
        p = np.asarray(model(images), np.float64)
        model_seconds += time.perf_counter() - t0
        for k, other in enumerate(others):
            t0 = time.perf_counter()
            other_probs[k].append(np.asarray(other(images), np.float64))
            other_seconds[k] += time.perf_counter() - t0
        if baselines:
            t0 = time.perf_counter()
            lap_scores += [laplacian_variance(im) for im in images]
            lap_seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            feats += [handcrafted_features(im) for im in images]
            feat_seconds += time.perf_counter() - t0
        pred = p.argmax(axis=1)
        for i in np.flatnonzero(pred != labels):
            record = {
                "image": np.asarray(images[i]).copy(),
                "true": CLASS_NAMES[int(labels[i])],
                "pred": CLASS_NAMES[int(pred[i])],
                "probability": float(p[i, pred[i]]),
                "strength": float(params[i, 0]) if params is not None else None,
                "path": paths[i] if paths else None,
            }
            counter += 1
            item = (record["probability"], counter, record)
            if len(errors) < MAX_MISCLASSIFIED:
                heapq.heappush(errors, item)
            elif item[0] > errors[0][0]:
                heapq.heapreplace(errors, item)
        ys.append(np.asarray(labels)), probs.append(p)
        if params is not None:
            strengths.append(params[:, 0])
        seen += len(labels)
        right += int((pred == labels).sum())
        if bar is not None:
            bar.update(seen, values=[("accuracy", right / seen)])
    y_true, probabilities = np.concatenate(ys), np.concatenate(probs)
    y_pred = probabilities.argmax(axis=1)

    metrics = classification_metrics(y_true, probabilities, present=source.present)
    metrics["expected_calibration_error"] = expected_calibration_error(y_true, probabilities)
    metrics["accuracy_by_strength"] = (
        accuracy_by_strength(y_true, y_pred, np.concatenate(strengths), ranges) if source.has_params else None
    )
    metrics["model"] = {
        "name": model_dir.resolve().name,
        "path": str(model_dir),
        "backbone": meta.get("backbone"),
        "weights": meta.get("weights"),
        "image_size": image_size,
        "test_time_views": int(meta.get("test_time_views", 1)),
        "blur_ranges": ranges.to_dict(),
        "held_out_at_fit": (meta.get("held_out") or {}).get("accuracy"),
    }
    metrics["data"] = {**source.description, "jpeg_quality": jpeg_quality}
    notes = []
    rows = [_row(f"blurnet ({_describe(meta)})", y_true, probabilities, source.present, model_seconds, _num_parameters(model))]
    for other, chunks, seconds in zip(others, other_probs, other_seconds):
        fit = other.metadata.get("fit_config") or {}
        rows.append(_row(
            f"{other.name} ({_describe(other.metadata)})", y_true, np.concatenate(chunks), source.present,
            seconds, _num_parameters(other),
            note=f"another export on the same images; trained with: {other.metadata.get('command') or fit or 'unknown'}"
                 + (f"; starting from an export trained with: {other.metadata['started_from'].get('command', 'unknown')}"
                    if isinstance(other.metadata.get("started_from"), dict) else ""),
        ))

    # --- baselines
    lap_by_strength = None
    if baselines:
        lap = LaplacianThreshold()
        scores = np.asarray(lap_scores)
        try:
            if source.val_maker is not None:
                vx, vy, _ = _stream_images(source.val_maker, baseline_images)
                lap.fit([laplacian_variance(im) for im in vx], vy != 0, method="best")
                how = f"threshold {{t:.1f}} chosen on {len(vy)} images of the validation stream"
            else:
                lap.fit(scores, y_true != 0, method="medians")
                how = "threshold {t:.1f} = midpoint of the sharp and blurred medians of these same images (optimistic)"
            called = lap.predict_blurred(scores)
            binary_right = called == (y_true != 0)
            rows.append({
                "name": LaplacianThreshold.name, "accuracy": None, "macro_f1": None,
                "binary_accuracy": float(binary_right.mean()),
                "recall": {CLASS_NAMES[c]: float(binary_right[y_true == c].mean()) for c in source.present},
                "parameters": 1, "images_per_s": len(scores) / lap_seconds if lap_seconds > 0 else None,
                "threshold": lap.threshold,
                "note": how.format(t=lap.threshold) + "; sharp vs blurred only, 'recall' = share called right",
            })
            if metrics["accuracy_by_strength"]:
                lap_by_strength = accuracy_by_strength(y_true, np.where(called, y_true, 0), np.concatenate(strengths), ranges)
        except ValueError as error:
            notes.append(f"Laplacian baseline skipped: {error}")
        try:
            train_maker = source.train_maker or bundled_split_makers(image_size, ranges, seed, batch_size, ("train",))[0]["train"]
            tx, ty, _ = _stream_images(train_maker, baseline_images)
            clf = HandcraftedClassifier(seed=seed).fit(tx, ty)
            t0 = time.perf_counter()
            hp = clf.predict_proba_features(np.stack(feats))
            seconds = feat_seconds + time.perf_counter() - t0
            rows.append(_row(
                HandcraftedClassifier.name, y_true, hp, source.present, seconds, clf.num_parameters,
                note=f"trained on {len(ty)} crops of the training stream of the bundled photographs; parameters = tree nodes",
            ))
        except (ValueError, FileNotFoundError) as error:
            notes.append(f"handcrafted baseline skipped: {error}")
    else:
        notes.append("baselines not computed (--no-baselines).")
    if not others:
        notes.append("Another keras.applications backbone: train it with `blurnet fit --backbone mobilenetv2 --name ...` and set it beside this one with `blurnet report --compare <its export>`.")
    if jpeg_quality is not None and baselines:
        notes.append(f"Test images JPEG-compressed at quality {jpeg_quality}; the baselines were tuned and trained on the "
                     "uncompressed validation and training streams (30 % of training crops are JPEG-compressed at 70 to 95, "
                     "as for the model).")
    metrics["baselines"] = rows

    # --- write everything into a temporary folder, then rename into place
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out_dir) as tmp:
        plots = []
        plot_confusion(metrics, tmp / "confusion_matrix.png")
        plots.append("confusion_matrix.png")
        log = read_training_log(model_dir / "training_log.csv")
        if log:
            plot_training_curves(log, tmp / "training_curves.png")
            plots.append("training_curves.png")
        else:
            notes.append("No training_log.csv in the model folder: training curves left out.")
        plot_accuracy_vs_strength(metrics["accuracy_by_strength"], tmp / "accuracy_vs_strength.png", lap_by_strength)
        plots.append("accuracy_vs_strength.png")
        worst = [r for _, _, r in sorted(errors, key=lambda e: -e[0])]
        plot_misclassified(worst, tmp / "misclassified.png")
        plots.append("misclassified.png")
        metrics["misclassified"] = [{k: v for k, v in r.items() if k != "image"} for r in worst]
        plot_psf_gallery(ranges, tmp / "psf_gallery.png")
        plots.append("psf_gallery.png")
        metrics["plots"] = plots
        metrics["notes"] = notes
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (tmp / "index.md").write_text(render_index(metrics, notes))
    return out_dir


def summary_line(out_dir) -> str:
    """`accuracy 0.912, macro-F1 0.910 on 2048 images -> reports/x/index.md`."""
    metrics = json.loads((Path(out_dir) / "metrics.json").read_text())
    return f"accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} on {metrics['n_images']} images -> {Path(out_dir) / 'index.md'}"
