"""`blurnet report`: metrics, plots and baselines of an exported model, in one folder.

`write_report` evaluates an export on the held-out test stream of the bundled
photographs (default: fixed seed, balanced, identical every run, blur parameters
known) or on a labelled folder `DIR/<class>/<file>`, and writes `metrics.json`,
PNG plots and an `index.md` that shows them. The folder is written in a hidden
temporary folder beside the target and renamed into place at the end, so an
interrupted report never leaves a half-written one.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from blurnet.atomic import atomic_directory, check_apart, check_replaceable
from blurnet.baseline_table import handcrafted_row, laplacian_row, render_baselines, write_baseline_comparison
from blurnet.evaluate import EvalSource, Evaluation, evaluate, generated_test_source, labelled_source
from blurnet.metrics import accuracy_by_strength, classification_metrics, expected_calibration_error, method_row, parameter_metrics
from blurnet.plots import PLOT_TITLES, PlotInputs, read_training_log, write_plots
from data_pipeline.classes import CLASS_NAMES, BlurRanges

logger = logging.getLogger(__name__)

__all__ = ["default_out_dir", "render_index", "summary_line", "write_baseline_comparison", "write_report"]


# ----------------------------------------------------------------------------- index.md


def _summary_lines(metrics: dict) -> list[str]:
    """Title and the one-paragraph summary: data, model, headline figures, main confusion, Laplacian baseline."""
    classes, model = metrics["classes"], metrics["model"]
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
    return [
        f"# blurnet report: {model['name']}",
        "",
        f"On {metrics['n_images']} images ({metrics['data']['source']}), the {model.get('backbone')} model "
        f"(weights {model.get('weights')}, trained on {model.get('image_size')} px crops"
        + (f", answers averaged over {model['test_time_views']} flipped/rotated views" if model.get("test_time_views", 1) > 1 else "")
        + ("; every photograph answered as `blurnet predict --full` answers it: auto scale, scale pyramid, every "
           "textured tile" if metrics["data"].get("answered_as") else "")
        + ") reaches accuracy "
        f"**{metrics['accuracy']:.3f}** and macro-F1 **{metrics['macro_f1']:.3f}**, with expected calibration error "
        f"{metrics['expected_calibration_error']:.3f}. {confusion}{lap_text}",
    ]


def _per_class_lines(metrics: dict) -> list[str]:
    """The metrics-per-class table."""
    lines = [
        "## Metrics per class",
        "",
        "| class | precision | recall | F1 | support |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, m in metrics["per_class"].items():
        lines.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    lines.append(f"| **all** | | accuracy {metrics['accuracy']:.3f} | macro {metrics['macro_f1']:.3f} | {metrics['n_images']} |")
    return lines


def _parameter_lines(metrics: dict) -> list[str]:
    """The blur-parameter table: per method, MAE, 90th-percentile error and R² of each parameter over its class."""
    methods = metrics.get("parameters") or {}
    if not methods:
        return []
    columns = [("sigma", "sigma (px)", True), ("length", "motion length (px)", True), ("angle", "angle (deg)", False),
               ("radius", "defocus radius (px)", True)]
    lines = ["## Blur parameters", "",
             "Each parameter over the images of its own class: MAE / 90th-percentile error / R²; the classical "
             "estimators are the spectral fall-off (sigma), the cepstrum's deepest point (motion) and a fit of the disk's transfer function to the spectrum (radius).", "",
             "| method | " + " | ".join(title for _, title, _ in columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for method, m in methods.items():
        cells = []
        for name, _, has_r2 in columns:
            mae, p90 = (m.get("angle_mae_deg"), m.get("angle_p90_deg")) if name == "angle" else (m.get(f"{name}_mae"), m.get(f"{name}_p90"))
            r2 = m.get(f"{name}_r2") if has_r2 else None
            cells.append("-" if mae is None else f"{mae:.3f} / {p90:.3f}" + (f" / {r2:.3f}" if r2 is not None else ""))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines + [""]


def render_index(metrics: dict, notes: list[str]) -> str:
    """The Markdown page: summary, metrics table, baselines table, blur-parameter table and every plot."""
    lines = _summary_lines(metrics) + [""] + _per_class_lines(metrics)
    lines += ["", render_baselines(metrics)]
    lines += [""] + _parameter_lines(metrics) if metrics.get("parameters") else []
    lines += ["", "## Plots", ""]
    for plot in metrics["plots"]:
        title = PLOT_TITLES.get(plot, plot)
        lines += [f"### {title}", "", f"![{title}]({plot})", ""]
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


def default_out_dir(model_dir) -> Path:
    """`reports/<model folder name>/`."""
    return Path("reports") / Path(model_dir).resolve().name


def _model_metrics(result: Evaluation, source: EvalSource, model_dir: Path, meta: dict, ranges: BlurRanges,
                   jpeg_quality: int | None) -> dict:
    """Classification metrics, calibration, accuracy per strength, and the model and data descriptions."""
    metrics = classification_metrics(result.y_true, result.probabilities, present=result.present)
    metrics["expected_calibration_error"] = expected_calibration_error(result.y_true, result.probabilities)
    metrics["accuracy_by_strength"] = (
        accuracy_by_strength(result.y_true, result.y_pred, result.strengths, ranges) if source.has_params else None
    )
    metrics["model"] = {
        "name": model_dir.resolve().name,
        "path": str(model_dir),
        "backbone": meta.get("backbone"),
        "weights": meta.get("weights"),
        "image_size": int(meta.get("image_size", 128)),
        "test_time_views": int(meta.get("test_time_views", 1)),
        "blur_ranges": ranges.to_dict(),
        "held_out_at_fit": (meta.get("held_out") or {}).get("accuracy"),
    }
    metrics["data"] = {**source.description, "classes_present": [CLASS_NAMES[c] for c in result.present],
                       "jpeg_quality": jpeg_quality}
    if result.params is not None:
        metrics["parameters"] = {method: parameter_metrics(result.y_true, result.params, raw)
                                 for method, raw in result.parameter_estimates.items()}
    return metrics


def _model_rows(model, others, result: Evaluation, source: EvalSource) -> list[dict]:
    """The baselines-table rows of the model and of each export it is compared with."""
    note = None
    if "blurnet" in result.parameter_estimates:  # `evaluate` answered with the head (`answer_tiles`) and timed that
        note = "images/s with the parameter head's answers, from the same passes (`answer_tiles`)" + (
            "; the other exports are timed through `serve`, probabilities only" if others else "")
    rows = [method_row(f"blurnet ({_describe(model.metadata)})", result.y_true, result.probabilities, result.present,
                       result.seconds, _num_parameters(model), note=note)]
    for other, probabilities, seconds in zip(others, result.other_probabilities, result.other_seconds):
        fit = other.metadata.get("fit_config") or {}
        started = other.metadata.get("started_from")
        rows.append(method_row(
            f"{other.name} ({_describe(other.metadata)})", result.y_true, probabilities, result.present,
            seconds, _num_parameters(other),
            note=f"another export on the same images; trained with: {other.metadata.get('command') or fit or 'unknown'}"
                 + (f"; starting from an export trained with: {started.get('command', 'unknown')}"
                    if isinstance(started, dict) else ""),
        ))
    return rows


def _baseline_rows(source: EvalSource, result: Evaluation, metrics: dict, baseline_images: int, image_size: int,
                   ranges: BlurRanges, seed: int, batch_size: int, notes: list[str]):
    """The Laplacian and handcrafted rows (a note instead of a row that cannot be computed), and the
    Laplacian baseline's accuracy per strength."""
    rows, lap_by_strength = [], None
    try:
        row, by_strength = laplacian_row(source, result, baseline_images, ranges)
        rows.append(row)
        if metrics["accuracy_by_strength"]:
            lap_by_strength = by_strength
    except ValueError as error:
        notes.append(f"Laplacian baseline skipped: {error}")
    try:
        rows.append(handcrafted_row(source, result, baseline_images, image_size, ranges, seed, batch_size))
    except (ValueError, FileNotFoundError) as error:
        notes.append(f"handcrafted baseline skipped: {error}")
    return rows, lap_by_strength


def _closing_notes(baselines: bool, compared: bool, jpeg_quality: int | None) -> list[str]:
    """Notes on what was left out or how the test images were changed."""
    notes = [] if baselines else ["baselines not computed (--no-baselines)."]
    if not compared:
        notes.append("Another keras.applications backbone: train it with `blurnet fit --backbone mobilenetv2 --name ...` and set it beside this one with `blurnet report --compare <its export>`.")
    if jpeg_quality is not None and baselines:
        notes.append(f"Test images JPEG-compressed at quality {jpeg_quality}; the baselines were tuned and trained on the "
                     "uncompressed validation and training streams (30 % of training crops are JPEG-compressed at 70 to 95, "
                     "as for the model).")
    return notes


def _write_folder(out_dir: Path, model_dir: Path, metrics: dict, result: Evaluation, lap_by_strength, ranges: BlurRanges,
                  notes: list[str]) -> None:
    """Plots, `metrics.json` and `index.md`, written in a temporary folder renamed into place."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out_dir, "metrics.json") as tmp:
        log = read_training_log(model_dir / "training_log.csv")
        scatter = ({"labels": result.y_true, "true": result.params, "methods": result.parameter_estimates}
                   if result.params is not None and result.parameter_estimates else None)
        inputs = PlotInputs(metrics, log, lap_by_strength, result.worst, ranges, scatter)
        metrics["plots"] = write_plots(inputs, tmp)
        if not log:
            notes.append("No training_log.csv in the model folder: training curves left out." if not (
                model_dir / "training_log.csv").is_file() else "No readable row in the model's training_log.csv: "
                "training curves left out.")
        metrics["misclassified"] = [{k: v for k, v in r.items() if k != "image"} for r in result.worst]
        metrics["notes"] = notes
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")  # strict JSON
        (tmp / "index.md").write_text(render_index(metrics, notes))


def _check_sizes(num_images: int, batch_size: int, baseline_images: int = 1) -> None:
    if num_images < 1:
        raise ValueError(f"--images must be >= 1, got {num_images!r}.")
    if baseline_images < 1:
        raise ValueError(f"--baseline-images must be >= 1, got {baseline_images!r}.")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size!r}.")


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
    labelled folder `DIR/<class>/<file>`. `seed` draws the generated images (default:
    the seed of the fit); the photographs are split by the fit's own seed whatever
    `seed` is, so that the test split holds no photograph the model trained on.
    `baseline_images` is the number of validation / training crops the baselines
    are tuned / trained on. `model` may be a loaded `ExportedModel` to reuse.
    `compare`: other exports (folders or loaded `ExportedModel`s, e.g. another
    backbone trained with `blurnet fit --backbone`) evaluated on the same images,
    each a row of the baselines table. `jpeg_quality` JPEG-compresses every test
    image at that quality before anything sees it (robustness to compression).
    Raises `NotAnExportError`, `FileNotFoundError` or `ValueError` with a clear message.
    """
    from blurnet.export import ExportedModel

    _check_sizes(num_images, batch_size, baseline_images)
    model_dir = Path(model_dir)
    model = model if model is not None else ExportedModel(model_dir)
    meta = model.metadata
    image_size = int(meta.get("image_size", 128))
    ranges = BlurRanges.from_dict(meta["blur_ranges"]) if meta.get("blur_ranges") else BlurRanges()
    split_seed = int((meta.get("fit_config") or {}).get("seed") or 0)  # the model's own split keeps the test held out
    if seed is None:
        seed = split_seed
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(model_dir)
    check_apart(out_dir, model_dir, "--out and the model")  # replacing the report must never touch the model
    if data_dir is not None:  # nor the photographs it is computed from, nor an export it compares with
        check_apart(out_dir, data_dir, "--out and --data")
    check_replaceable(out_dir, "metrics.json")  # before the evaluation, so that minutes of work are not refused at the end
    others = [m if isinstance(m, ExportedModel) else ExportedModel(m) for m in compare]
    for other in others:
        check_apart(out_dir, other.folder, "--out and a --compare export")
    source = (generated_test_source(image_size, ranges, num_images, seed, batch_size, split_seed=split_seed) if data_dir is None
              else labelled_source(data_dir, batch_size))

    result = evaluate(model, source, others, baselines=baselines, jpeg_quality=jpeg_quality, progress=progress)
    metrics = _model_metrics(result, source, model_dir, meta, ranges, jpeg_quality)
    notes, rows, lap_by_strength = [], _model_rows(model, others, result, source), None
    if baselines:
        extra, lap_by_strength = _baseline_rows(source, result, metrics, baseline_images, image_size, ranges, seed,
                                                batch_size, notes)
        rows += extra
    notes += _closing_notes(baselines, bool(others), jpeg_quality)
    metrics["baselines"] = rows
    _write_folder(out_dir, model_dir, metrics, result, lap_by_strength, ranges, notes)
    return out_dir


def summary_line(out_dir) -> str:
    """`accuracy 0.912, macro-F1 0.910 on 2048 images -> reports/x/index.md`."""
    metrics = json.loads((Path(out_dir) / "metrics.json").read_text())
    return f"accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} on {metrics['n_images']} images -> {Path(out_dir) / 'index.md'}"
