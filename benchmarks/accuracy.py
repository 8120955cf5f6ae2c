"""Held-out accuracy of the committed model, recomputed from scratch.

    python benchmarks/accuracy.py

Loads `saved_models/blurnet-densenet121` (the SavedModel, as any TensorFlow user
would), generates the held-out test split the report uses (2,048 images from
photographs never used in training, balanced, fixed seed), and prints accuracy,
macro-F1 and the recall of every class. Last line: JSON with `accuracy`,
`macro_f1` and `recall` (a map by class name).
"""
from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from blurnet.export import ExportedModel, default_model_dir
from blurnet.metrics import classification_metrics
from blurnet.report import generated_test_source
from data_pipeline.classes import CLASS_NAMES, BlurRanges

NUM_IMAGES, BATCH = 2048, 32


def main():
    model = ExportedModel(default_model_dir())
    meta = model.metadata
    seed = int(meta.get("fit_config", {}).get("seed", 0))
    ranges = BlurRanges.from_dict(meta["blur_ranges"]) if "blur_ranges" in meta else BlurRanges()
    source = generated_test_source(model.image_size, ranges, NUM_IMAGES, seed, BATCH)
    ys, ps = [], []
    for images, labels, _, _ in source.chunks:
        ps.append(np.asarray(model(images)))
        ys.append(labels)
    m = classification_metrics(np.concatenate(ys), np.concatenate(ps))
    print(f"model: {model.folder} ({meta.get('backbone')}, weights {meta.get('weights')}, {model.image_size} px)")
    print(f"held-out test photographs: {', '.join(source.description['photographs'])}")
    print(f"accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} on {m['n_images']} images (paper: 0.978)")
    for name in CLASS_NAMES:
        print(f"  recall {name:>8}: {m['per_class'][name]['recall']:.4f}")
    print(json.dumps({"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4),
                      "recall": {n: round(m["per_class"][n]["recall"], 4) for n in CLASS_NAMES}}))


if __name__ == "__main__":
    main()
