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
pixels); and the 2,048 images at the training size once more, every image
JPEG-compressed at quality 75. These use the SPEC's classic shapes (straight streaks, uniform
disks). Then 1,024 images of the realistic families only: every motion sample a camera-shake
trajectory, every defocus sample a real-lens aperture (polygonal iris, brighter rim or centre,
soft edge), 30 % of sharp samples a shake too small to see. Last line: JSON with `accuracy`,
`macro_f1`, `recall` (a map by class name), `accuracy_2x_crops`, `accuracy_jpeg75`,
`realistic_accuracy`, `shake_motion_recall` and `lens_defocus_recall`; for a model with the parameter
head, its errors on the 2,048 held-out images (the classic shapes, each parameter over the images of its
class), its answers averaged over the model's views as `blurnet predict --full` does (`LoadedModel.answer_tiles`),
under `sigma_mae`, `length_mae`, `angle_mae_deg`, `radius_mae` and `parameters` (90th percentiles, biases, R²,
counts), and from one view under `parameters_one_view`; null without the head. With the head, the first
accuracy comes from those same passes (the export's Keras network over the same views, which equals `serve`
on images of the tile size to 1e-4), not from `serve`; the other tests use `serve`.
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
from data_pipeline.augment import jpeg_roundtrip
from data_pipeline.classes import CLASS_NAMES, BlurRanges
from data_pipeline.degrade import PsfFamilies

NUM_IMAGES, NUM_IMAGES_2X, NUM_IMAGES_REALISTIC, BATCH = 2048, 512, 1024, 32
REALISTIC = PsfFamilies(shake_fraction=1.0, lens_fraction=1.0)


def evaluate(model, image_size: int, ranges: BlurRanges, seed: int, jpeg_qualities=(None,),
             num_images: int = NUM_IMAGES, families: PsfFamilies = PsfFamilies.classic(),
             parameters: bool = False) -> tuple[list[dict], dict]:
    """Metrics of `model` on the held-out test split generated at `image_size` with the PSF `families`,
    once per entry of `jpeg_qualities` (None: as generated; a number: JPEG-compressed at that quality),
    and the data description. The images are generated once for all entries. With `parameters` and a
    parameter head, the first entry's metrics hold its errors under `parameters` (averaged over the model's views, as
    `blurnet predict --full` answers) and `parameters_one_view` (`blurnet.metrics.parameter_metrics`)."""
    source = generated_test_source(image_size, ranges, num_images, seed, BATCH, families)
    ys, ps, truths, raws, one_view = [], [[] for _ in jpeg_qualities], [], [], []
    head = parameters and model.has_parameters
    for images, labels, params, _ in source.chunks:
        if head:  # the images as generated: probabilities and parameters from the same passes
            probabilities, raw = model.answer_tiles(images, model.views)
            truths.append(params)
            raws.append(raw)
            one_view.append(model.estimate_tiles(images, 1))
        for k, quality in enumerate(jpeg_qualities):
            if head and quality is None:
                ps[k].append(probabilities)
                continue
            seen = images if quality is None else np.stack([jpeg_roundtrip(im, quality) for im in images])
            ps[k].append(np.asarray(model(seen)))
        ys.append(labels)
    y = np.concatenate(ys)
    metrics = [classification_metrics(y, np.concatenate(p)) for p in ps]
    if raws:
        metrics[0]["parameters"] = parameter_metrics(y, np.concatenate(truths), np.concatenate(raws))
        metrics[0]["parameters_one_view"] = parameter_metrics(y, np.concatenate(truths), np.concatenate(one_view))
    return metrics, source.description


def main(model_dir: str | None = None):
    model = ExportedModel(model_dir or default_model_dir())
    meta = model.metadata
    seed = int(meta.get("fit_config", {}).get("seed", 0))
    ranges = BlurRanges.from_dict(meta["blur_ranges"]) if "blur_ranges" in meta else BlurRanges()
    (m, jpeg), description = evaluate(model, model.image_size, ranges, seed, jpeg_qualities=(None, 75), parameters=True)
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
    (big,), big_description = evaluate(model, 2 * model.image_size, ranges, seed, num_images=NUM_IMAGES_2X)
    print(f"{', '.join(big_description['photographs'])}, {big['n_images']} images at {2 * model.image_size} px crops: accuracy {big['accuracy']:.4f}, recall "
          + ", ".join(f"{n} {big['per_class'][n]['recall']:.3f}" for n in CLASS_NAMES))
    print(f"same images JPEG-compressed at quality 75: accuracy {jpeg['accuracy']:.4f}, recall "
          + ", ".join(f"{n} {jpeg['per_class'][n]['recall']:.3f}" for n in CLASS_NAMES))
    (real,), _ = evaluate(model, model.image_size, ranges, seed, num_images=NUM_IMAGES_REALISTIC, families=REALISTIC)
    print(f"realistic families (camera-shake trajectories, real-lens apertures), {real['n_images']} images: accuracy "
          f"{real['accuracy']:.4f}, recall " + ", ".join(f"{n} {real['per_class'][n]['recall']:.3f}" for n in CLASS_NAMES))
    print(json.dumps({"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4),
                      "recall": {n: round(m["per_class"][n]["recall"], 4) for n in CLASS_NAMES},
                      "accuracy_2x_crops": round(big["accuracy"], 4), "accuracy_jpeg75": round(jpeg["accuracy"], 4),
                      "realistic_accuracy": round(real["accuracy"], 4),
                      "shake_motion_recall": round(real["per_class"]["motion"]["recall"], 4),
                      "lens_defocus_recall": round(real["per_class"]["defocus"]["recall"], 4),
                      **{k: (round(errors[k], 4) if errors and k in errors else None)
                         for k in ("sigma_mae", "length_mae", "angle_mae_deg", "radius_mae")},
                      "parameters": errors, "parameters_one_view": one_view}))


if __name__ == "__main__":
    import sys

    main(sys.argv[1] if len(sys.argv) > 1 else None)
