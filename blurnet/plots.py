"""The plots of `blurnet report`, and `PLOT_TABLE`: their file names and titles in `index.md` order.

Every function draws one PNG with matplotlib (Agg backend, imported on first use).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from blurnet.training_log import read_log_rows
from data_pipeline.classes import CLASS_NAMES, BlurRanges


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(metrics: dict, path: Path) -> None:
    """Counts and row-normalised confusion matrices side by side (`confusion_figure`), saved to `path`."""
    plt = _plt()
    fig = confusion_figure(metrics)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_figure(metrics: dict):
    """The figure of `plot_confusion` (sklearn ConfusionMatrixDisplay). A class with no test image has no recall:
    its row of the normalised matrix reads "n/a" in grey, not 0.00."""
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    counts = np.asarray(metrics["confusion_matrix"])
    absent = counts.sum(axis=1) == 0
    normalised = np.asarray(metrics["confusion_matrix_normalized"], np.float64)
    for ax, values, fmt, title in (
        (axes[0], counts, "d", "counts"),
        (axes[1], normalised, ".2f", "row-normalised (recall on the diagonal)"),
    ):
        display = ConfusionMatrixDisplay(values, display_labels=metrics["classes"])
        display.plot(ax=ax, values_format=fmt, colorbar=False, cmap="Blues")
        if values is normalised:
            for text in display.text_[absent].ravel():
                text.set_text("n/a")
                text.set_color("grey")
        ax.set_title(title)
    fig.suptitle(f"accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}, {metrics['n_images']} images")
    fig.tight_layout()
    return fig


def read_training_log(path: Path) -> dict[str, list[float]] | None:
    """Columns of a CSV training log as float lists, one value per row (`read_log_rows`: rows that do not parse
    are skipped), NaN where a row has no value in that column, so that every column stays aligned with `epoch`;
    None without one."""
    rows = read_log_rows(path)
    # a model with the parameter head logs its class accuracy as `probabilities_accuracy`
    rows = [{k.replace("probabilities_accuracy", "accuracy"): v for k, v in row.items()} for row in rows]
    names = list(dict.fromkeys(k for row in rows for k in row))
    return {name: [row.get(name, float("nan")) for row in rows] for name in names} or None


def plot_training_curves(log: dict[str, list[float]], path: Path) -> None:
    """Accuracy and loss per epoch, training and validation."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key in zip(axes, ("accuracy", "loss")):
        for name, style in ((key, "-"), (f"val_{key}", "--")):
            if name in log:  # NaN (a row without this value) leaves a gap, not a shift
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


@dataclasses.dataclass
class PlotInputs:
    """What the plots are drawn from: the report's metrics, the training log (or None), the Laplacian
    baseline's accuracy per strength (or None), the worst errors and the blur ranges."""

    metrics: dict
    training_log: dict | None
    strength_baseline: dict | None
    worst: list[dict]
    ranges: BlurRanges
    parameters: dict | None = None  # `labels`, `true` (n, 3) and each method's raw (n, 5) estimates, by method name


def _confusion(inputs: PlotInputs, path: Path) -> bool:
    plot_confusion(inputs.metrics, path)
    return True


def _training_curves(inputs: PlotInputs, path: Path) -> bool:
    if not inputs.training_log:
        return False
    plot_training_curves(inputs.training_log, path)
    return True


def _accuracy_vs_strength(inputs: PlotInputs, path: Path) -> bool:
    plot_accuracy_vs_strength(inputs.metrics["accuracy_by_strength"], path, inputs.strength_baseline)
    return True


def _misclassified(inputs: PlotInputs, path: Path) -> bool:
    plot_misclassified(inputs.worst, path)
    return True


def _psf_gallery(inputs: PlotInputs, path: Path) -> bool:
    plot_psf_gallery(inputs.ranges, path)
    return True


def plot_parameter_scatter(parameters: dict, path: Path) -> None:
    """Estimated against true blur parameter, one panel per parameter over the images of its class, one colour per method."""
    from data_pipeline.parameters import PARAMETER_TARGETS, angle_degrees

    plt = _plt()
    labels, true = np.asarray(parameters["labels"]), np.asarray(parameters["true"])
    panels = (("sigma", "gaussian", "sigma (px)"), ("length", "motion", "motion length (px)"),
              ("angle", "motion", "motion angle (deg)"), ("radius", "defocus", "defocus radius (px)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4))
    for ax, (name, class_name, title) in zip(axes, panels):
        rows = labels == CLASS_NAMES.index(class_name)
        truth = np.mod(true[rows, 1], 180.0) if name == "angle" else true[rows, 0]
        for (method, raw), colour in zip(parameters["methods"].items(), ("tab:blue", "tab:grey", "tab:orange")):
            raw = np.asarray(raw)[rows]
            estimate = (angle_degrees(raw[:, 2], raw[:, 3]) if name == "angle"
                        else raw[:, PARAMETER_TARGETS.index(name)])
            ax.scatter(truth, estimate, s=6, alpha=0.5, color=colour, label=method)
        if rows.any():
            low, high = float(truth.min()), float(truth.max())
            ax.plot([low, high], [low, high], "k--", lw=1)
        ax.set_xlabel(f"true {title}")
        ax.set_ylabel("estimated")
        ax.set_title(f"{title}, {int(rows.sum())} {class_name} images")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _parameter_scatter(inputs: PlotInputs, path: Path) -> bool:
    if not inputs.parameters:
        return False
    plot_parameter_scatter(inputs.parameters, path)
    return True


#: The report's plots in `index.md` order: (file name, title, draw(inputs, path) -> False when left out).
PLOT_TABLE = (
    ("confusion_matrix.png", "Confusion matrix", _confusion),
    ("training_curves.png", "Training curves", _training_curves),
    ("accuracy_vs_strength.png", "Accuracy against blur strength", _accuracy_vs_strength),
    ("parameters.png", "Blur parameters: estimated against true", _parameter_scatter),
    ("misclassified.png", "Worst errors", _misclassified),
    ("psf_gallery.png", "PSF gallery", _psf_gallery),
)
PLOTS = tuple(name for name, _, _ in PLOT_TABLE)
PLOT_TITLES = {name: title for name, title, _ in PLOT_TABLE}


def write_plots(inputs: PlotInputs, folder: Path) -> list[str]:
    """Draw every plot of `PLOT_TABLE` that has data into `folder`; the file names written, in order."""
    return [name for name, _, draw in PLOT_TABLE if draw(inputs, Path(folder) / name)]
