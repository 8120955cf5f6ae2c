"""Held-out accuracy of the committed model, recomputed from scratch.

    python benchmarks/accuracy.py [MODEL_DIR]

Loads `saved_models/blurnet-densenet121` or MODEL_DIR (the SavedModel, as any TensorFlow user
would), generates the held-out test split the report uses (2,048 images from
photographs never used in training, balanced, fixed seed), and prints accuracy,
macro-F1 and the recall of every class. The SavedModel answers as exported: the
bundled one averages 8 flipped/rotated views of each image (`blurnet.views`).
Then the same held-out photographs at twice the training crop size (512 images,
to keep the run short): the model does not resize, so this checks that its
answer does not depend on the input size (it should only get better with more
pixels); and the 2,048 images at the training size twice more, every image
JPEG-compressed at quality 75, then every image a 64-colour dithered palette
image (as a GIF holds it). These use the SPEC's classic shapes (straight streaks, uniform
disks). Then 1,024 images of the realistic families only: every motion sample a camera-shake
trajectory with a pin-sharp trail, every defocus
sample a real-lens aperture (polygonal iris, brighter rim or centre, soft edge), 30 % of sharp samples a
shake too small to see; then 1,024 more of those families with every motion trail softened by a
Gaussian of 0.5 to 1 px, as the optics soften a real shake's trail and as `blurnet fit`'s realistic mix
softens half of its trails (`PsfFamilies.motion_softness`). Last line: JSON with `accuracy`,
`macro_f1`, `recall` (a map by class name), `accuracy_2x_crops`, `accuracy_jpeg75`, `accuracy_palette64`,
`realistic_accuracy`, `realistic_recall` (by class), `shake_motion_recall`, `lens_defocus_recall`,
`softened_accuracy`, `softened_recall` and `softened_shake_motion_recall`; for a model with the parameter
head, its errors on the 2,048 held-out images (the classic shapes, each parameter over the images of its
class), its answers averaged over the model's views as `blurnet predict --full` does (`LoadedModel.answer_tiles`),
under `sigma_mae`, `length_mae`, `angle_mae_deg`, `radius_mae` and `parameters` (90th percentiles, biases, R²,
counts), from one view under `parameters_one_view`, and on the 512 crops of twice the size through the
SavedModel's `estimate` endpoint (tiles, their texture-weighted median) under `parameters_2x_crops`; null
without the head. With the head, the first accuracy comes from those same passes (the export's Keras network
over the same views, which equals `serve` on images of the tile size to 1e-4) and the 2x crops' from
`estimate` (whose probabilities are `serve`'s); the other tests use `serve`.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's blurnet, installed or not

from blurnet.export import ExportedModel, default_model_dir
from blurnet.metrics import classification_metrics, parameter_metrics
from blurnet.evaluate import generated_test_source
from data_pipeline.augment import sample_palette, save_all_as
from data_pipeline.classes import CLASS_NAMES, BlurRanges
from data_pipeline.degrade import PsfFamilies
from data_pipeline.parameters import raw_from_estimates

NUM_IMAGES, NUM_IMAGES_2X, NUM_IMAGES_REALISTIC, BATCH = 2048, 512, 1024, 32
PALETTE_COLOURS = 64
REALISTIC = PsfFamilies(shake_fraction=1.0, lens_fraction=1.0, motion_softness=0.0)  # pin-sharp trails
SOFTENED = PsfFamilies(shake_fraction=1.0, lens_fraction=1.0, motion_softness=1.0)  # every trail softened


def saved_as(images: np.ndarray, kind: str, value: int, rng: np.random.Generator) -> np.ndarray:
    """`images` after a file format's round trip: JPEG at quality `value`, or a palette of `value` colours
    drawn from each image with `rng`, Floyd-Steinberg dithered, as `blurnet fit`'s training mix saves some."""
    formats = [(kind, value if kind == "jpeg" else sample_palette(im, value, rng)) for im in images]
    return np.stack(save_all_as(list(images), formats))


def evaluate(model, image_size: int, ranges: BlurRanges, seed: int, file_formats=(None,),
             num_images: int = NUM_IMAGES, families: PsfFamilies = PsfFamilies.classic(),
             parameters: bool = False, endpoint: bool = False) -> tuple[list[dict], dict]:
    """Metrics of `model` on the held-out test split generated at `image_size` with the PSF `families`,
    once per entry of `file_formats` (None: as generated; `("jpeg", quality)` or `("palette", colours)`: `saved_as`),
    and the data description. The images are generated once for all entries. With `parameters` and a
    parameter head, the first entry's metrics hold its errors under `parameters` (averaged over the model's views, as
    `blurnet predict --full` answers) and `parameters_one_view` (`blurnet.metrics.parameter_metrics`); with
    `endpoint`, both the probabilities and the parameters come from the SavedModel's `estimate` instead (images
    larger than a tile answered tile by tile, the parameters by the texture-weighted median of the tiles')."""
    # The photographs are split as the model's fit split them (its crop size and seed), whatever size is cropped here.
    source = generated_test_source(image_size, ranges, num_images, seed, BATCH, families, split_size=model.image_size,
                                   split_seed=seed)
    ys, ps, truths, raws, one_view = [], [[] for _ in file_formats], [], [], []
    head = parameters and model.has_parameters
    palette_rng = np.random.default_rng(seed)  # one stream for all chunks: each image its own palette pixels
    for images, labels, params, _ in source.chunks:
        if head and endpoint:
            out = model.estimate(images)
            probabilities = out["probabilities"]
            truths.append(params)
            raws.append(raw_from_estimates(out["sigma"], out["length"], out["angle"], out["radius"]))
        elif head:  # the images as generated: probabilities and parameters from the same passes
            probabilities, raw = model.answer_tiles(images, model.views)
            truths.append(params)
            raws.append(raw)
            one_view.append(model.estimate_tiles(images, 1))
        for k, file_format in enumerate(file_formats):
            if head and file_format is None:
                ps[k].append(probabilities)
                continue
            seen = images if file_format is None else saved_as(images, *file_format, palette_rng)
            ps[k].append(np.asarray(model(seen)))
        ys.append(labels)
    y = np.concatenate(ys)
    metrics = [classification_metrics(y, np.concatenate(p)) for p in ps]
    if raws:
        metrics[0]["parameters"] = parameter_metrics(y, np.concatenate(truths), np.concatenate(raws))
        if one_view:
            metrics[0]["parameters_one_view"] = parameter_metrics(y, np.concatenate(truths), np.concatenate(one_view))
    return metrics, source.description


def main(model_dir: str | None = None):
    model = ExportedModel(model_dir or default_model_dir())
    meta = model.metadata
    seed = int(meta.get("fit_config", {}).get("seed", 0))
    ranges = BlurRanges.from_dict(meta["blur_ranges"]) if "blur_ranges" in meta else BlurRanges()
    (m, jpeg, palette), description = evaluate(model, model.image_size, ranges, seed, parameters=True,
                                               file_formats=(None, ("jpeg", 75), ("palette", PALETTE_COLOURS)))
    print(f"model: {model.folder} ({meta.get('backbone')}, weights {meta.get('weights')}, {model.image_size} px, "
          f"{model.views} view(s) averaged per image)")
    print(f"held-out test photographs: {', '.join(description['photographs'])}"
          + (f" (left out: {', '.join(f'{k}, {v}' for k, v in description['left_out'].items())})" if description.get("left_out") else ""))
    print(f"accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} on {m['n_images']} images at {model.image_size} px (paper: 0.978)")
    for name in CLASS_NAMES:
        print(f"  recall {name:>8}: {m['per_class'][name]['recall']:.4f}")
    errors, one_view = m.get("parameters"), m.get("parameters_one_view")
    for name, figures in ((f"{model.views} view(s) averaged", errors), ("one view", one_view)):
        if figures:
            print(f"blur parameters ({name}, each over its class's images): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in figures.items() if k.endswith(("_mae", "_mae_deg", "_bias", "_r2")) and v is not None))
    (big,), big_description = evaluate(model, 2 * model.image_size, ranges, seed, num_images=NUM_IMAGES_2X,
                                       parameters=True, endpoint=True)
    print(f"{', '.join(big_description['photographs'])}, {big['n_images']} images at {2 * model.image_size} px crops: accuracy {big['accuracy']:.4f}, recall "
          + ", ".join(f"{n} {big['per_class'][n]['recall']:.3f}" for n in CLASS_NAMES))
    errors_2x = big.get("parameters")
    if errors_2x:
        print(f"blur parameters at {2 * model.image_size} px crops (the estimate endpoint: {model.views} views, median of the tiles): "
              + ", ".join(f"{k} {v:.3f}" for k, v in errors_2x.items() if k.endswith(("_mae", "_mae_deg", "_bias", "_r2")) and v is not None))
    print(f"same images JPEG-compressed at quality 75: accuracy {jpeg['accuracy']:.4f}, recall "
          + ", ".join(f"{n} {jpeg['per_class'][n]['recall']:.3f}" for n in CLASS_NAMES))
    print(f"same images as {PALETTE_COLOURS}-colour dithered palette images (GIF): accuracy {palette['accuracy']:.4f}, recall "
          + ", ".join(f"{n} {palette['per_class'][n]['recall']:.3f}" for n in CLASS_NAMES))
    (real,), _ = evaluate(model, model.image_size, ranges, seed, num_images=NUM_IMAGES_REALISTIC, families=REALISTIC)
    print(f"realistic families (camera-shake trajectories, real-lens apertures), {real['n_images']} images: accuracy "
          f"{real['accuracy']:.4f}, recall " + ", ".join(f"{n} {real['per_class'][n]['recall']:.3f}" for n in CLASS_NAMES))
    (soft,), _ = evaluate(model, model.image_size, ranges, seed, num_images=NUM_IMAGES_REALISTIC, families=SOFTENED)
    print(f"the same with every motion trail softened by a Gaussian of 0.5 to 1 px: accuracy {soft['accuracy']:.4f}, recall "
          + ", ".join(f"{n} {soft['per_class'][n]['recall']:.3f}" for n in CLASS_NAMES))
    print(json.dumps({"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4),
                      "recall": {n: round(m["per_class"][n]["recall"], 4) for n in CLASS_NAMES},
                      "accuracy_2x_crops": round(big["accuracy"], 4), "accuracy_jpeg75": round(jpeg["accuracy"], 4),
                      "accuracy_palette64": round(palette["accuracy"], 4),
                      "realistic_accuracy": round(real["accuracy"], 4),
                      "realistic_recall": {n: round(real["per_class"][n]["recall"], 4) for n in CLASS_NAMES},
                      "shake_motion_recall": round(real["per_class"]["motion"]["recall"], 4),
                      "lens_defocus_recall": round(real["per_class"]["defocus"]["recall"], 4),
                      "softened_accuracy": round(soft["accuracy"], 4),
                      "softened_recall": {n: round(soft["per_class"][n]["recall"], 4) for n in CLASS_NAMES},
                      "softened_shake_motion_recall": round(soft["per_class"]["motion"]["recall"], 4),
                      **{k: (round(errors[k], 4) if errors and k in errors else None)
                         for k in ("sigma_mae", "length_mae", "angle_mae_deg", "radius_mae")},
                      "parameters": errors, "parameters_one_view": one_view, "parameters_2x_crops": errors_2x}))


if __name__ == "__main__":
    import sys

    main(sys.argv[1] if len(sys.argv) > 1 else None)
