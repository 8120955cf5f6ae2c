"""Fine-tune a blurnet model on any Keras 3 backend (JAX, PyTorch) from the numpy batch makers.

`blurnet fit` trains with TensorFlow (`tf.data`, `tf.distribute`, SavedModel
export). This module is for a GPU machine that has JAX or PyTorch but no
TensorFlow: it imports neither TensorFlow nor `blurnet.train`, makes batches
with `data_pipeline.batches.BlurBatchMaker` in worker processes, and trains
the same `create_model` network. It writes the weights as `.npz` parts of at
most 15 MB each (`weights-G-K.npz`, named by `weights.json`), `train_keras.json` (settings,
curves, validation accuracy) and a `blurnet.json` that names the starting
export; `blurnet fit --init-from OUT --epochs-finetune 0` then evaluates and
exports them with TensorFlow (`load_npz_weights` puts them into a model).

    KERAS_BACKEND=jax python -m blurnet.train_keras --init-from saved_models/blurnet-densenet121 \
        --minutes 6 --out weights/

`--init-from` takes a blurnet export (its SavedModel's variables are read
without TensorFlow: `blurnet.checkpoint`), a folder this command wrote, or a
`model.keras` folder (`blurnet export EXPORT --format keras --out FOLDER`).

The parameter head (`blurnet.parameter_head`) trains with the classifier unless
`--no-parameter-head`; from a starting point without it, every other layer is
taken over and the head starts from random weights.

`--psf-families` picks the blur shapes as `blurnet fit --psf-families` does, and
`--palette-share` the share of dithered palette images as `--palette-share`;
validation draws them with the augmentation and camera steps of training, as
`blurnet fit` validates.

Training is time-boxed (`--minutes`): the learning rate follows a cosine over
the time budget, validation runs every `--val-every` steps, and the weights
of the best validation accuracy are kept (written as soon as they are found).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from blurnet.atomic import atomic_file
from blurnet.loaded_model import weights_origin
from data_pipeline.augment import AugmentConfig
from data_pipeline.batches import BlurBatchMaker, PipelineConfig
from data_pipeline.classes import MIN_IMAGE_SIDE
from data_pipeline.degrade import PSF_FAMILY_PRESETS, PsfFamilies
from data_pipeline.parameters import parameter_targets
from data_pipeline.scenes import generated_scenes
from data_pipeline.sources import bundled_splits

PART_BYTES = 15_000_000
WEIGHTS_MANIFEST = "weights.json"  # names the parts of the last complete save
_MAKER: BlurBatchMaker | None = None  # each worker process builds its own


def pipeline_config(image_size: int, batch_size: int, seed: int, psf_families: str,
                    palette_share: float = AugmentConfig.palette_probability) -> PipelineConfig:
    """What the samples are made of, as `blurnet fit` makes them: crop and batch size, seed, the named PSF families
    and the share of dithered palette images."""
    return PipelineConfig(image_size=image_size, batch_size=batch_size, seed=seed, families=PsfFamilies.named(psf_families),
                          augment=AugmentConfig.with_palette_share(palette_share))


def _training_maker(image_size: int, batch_size: int, seed: int, data_seed: int, psf_families: str,
                    scenes: int = 0, palette_share: float = AugmentConfig.palette_probability) -> BlurBatchMaker:
    config = pipeline_config(image_size, batch_size, data_seed, psf_families, palette_share)
    return BlurBatchMaker(bundled_splits(image_size, seed)["train"] + generated_scenes(scenes, seed=seed), config, "train")


def _start_worker(*maker_args) -> None:
    import cv2

    global _MAKER
    cv2.setNumThreads(1)  # one process per core already
    sys.stderr = open(os.devnull, "w")  # the parent already printed the photographs left out
    _MAKER = _training_maker(*maker_args)


def _make_uint8_batch(index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images as uint8 (a quarter of the bytes between processes), labels, and the parameter-head targets and mask."""
    images, labels, params = _MAKER.make_batch(index)
    targets, mask = parameter_targets(labels, params)
    return np.clip(images + 0.5, 0, 255).astype(np.uint8), labels, np.concatenate([targets, mask], axis=1)


def save_npz_weights(weights: list[np.ndarray], folder: Path) -> list[Path]:
    """Write `model.get_weights()` as `.npz` parts of at most `PART_BYTES` each, then `weights.json` naming them;
    returns the parts. Each save writes new part files (`weights-G-K.npz`, G counting the saves) and replaces
    `weights.json` last, in one rename, before the previous save's parts are deleted: a run killed at any moment
    leaves one whole set of weights, the old or the new, never a mix of the two."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / WEIGHTS_MANIFEST
    generation = json.loads(manifest.read_text())["generation"] + 1 if manifest.is_file() else 0
    parts, current, size = [], {}, 0
    for i, w in enumerate(weights):
        if current and size + w.nbytes > PART_BYTES:
            parts.append(current)
            current, size = {}, 0
        current[f"w{i:04d}"] = w
        size += w.nbytes
    parts.append(current)
    paths = []
    for k, part in enumerate(parts):
        paths.append(folder / f"weights-{generation}-{k}.npz")
        with atomic_file(paths[-1]) as tmp:
            np.savez(tmp, **part)
    with atomic_file(manifest) as tmp:
        tmp.write_text(json.dumps({"generation": generation, "parts": [p.name for p in paths], "arrays": len(weights)}))
    for stale in set(folder.glob("weights-*.npz")) - set(paths):  # the previous save's, or a killed save's, parts
        stale.unlink()
    return paths


def weight_parts(folder: str | os.PathLike) -> list[Path]:
    """The `.npz` parts of the last complete save in `folder`, as its `weights.json` names them; [] if it has none."""
    manifest = Path(folder) / WEIGHTS_MANIFEST
    if not manifest.is_file():
        return []
    paths = [Path(folder) / name for name in json.loads(manifest.read_text())["parts"]]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise ValueError(f"{str(manifest)!r} names weight files that are missing: {', '.join(missing)}.")
    return paths


def load_npz_weights(model, folder: str | os.PathLike) -> None:
    """Set `model`'s weights from the `.npz` parts that `folder`'s `weights.json` names; `ValueError` if there are
    none or they do not fit."""
    merged = {}
    for path in weight_parts(folder):
        with np.load(path) as part:
            merged.update({k: part[k] for k in part.files})
    if not merged:
        raise ValueError(f"no weights in {str(folder)!r}: it has no {WEIGHTS_MANIFEST} naming weight files.")
    weights = [merged[k] for k in sorted(merged)]
    expected = model.get_weights()
    if len(weights) != len(expected) or any(a.shape != b.shape for a, b in zip(weights, expected)):
        raise ValueError(f"the weights in {str(folder)!r} ({len(weights)} arrays) do not fit model {model.name!r} ({len(expected)} arrays).")
    model.set_weights(weights)


def _batches(pool, start: int, ahead: int):
    """Batches `start, start+1, ...` from the worker pool, in order, at most `ahead` made before they are used."""
    slots, stop = threading.Semaphore(ahead), threading.Event()

    def indices():
        i = start
        while True:
            slots.acquire()
            if stop.is_set():
                return
            yield i
            i += 1

    try:
        for batch in pool.imap(_make_uint8_batch, indices()):
            slots.release()
            yield batch
    finally:  # wake the pool's feeder thread so that the pool can shut down
        stop.set()
        slots.release()


def hardware() -> str:
    """CPU cores and the backend's accelerators, in words."""
    import keras

    devices = []
    if keras.backend.backend() == "jax":
        import jax

        devices = [d.device_kind for d in jax.devices() if d.platform != "cpu"]
    elif keras.backend.backend() == "torch":
        import torch

        devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return f"{os.cpu_count()} CPU cores, {len(devices)} GPU(s) {devices}, Keras on {keras.backend.backend()}"


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line settings (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m blurnet.train_keras", description=__doc__.split("\n\n")[0])
    p.add_argument("--init-from", required=True,
                   help="starting weights: a blurnet export (saved_models/blurnet-densenet121), a folder written by this "
                        "command (weights.json and its .npz parts) or by 'blurnet export EXPORT --format keras' (model.keras)")
    p.add_argument("--out", required=True, help="folder for the weights (weights.json and its .npz parts) and train_keras.json")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (AdamW, cosine decay)")
    p.add_argument("--minutes", type=float, default=6.0, help="training time budget")
    p.add_argument("--val-every", type=int, default=1000)
    p.add_argument("--val-images", type=int, default=2048)
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--psf-families", choices=sorted(PSF_FAMILY_PRESETS), default="realistic",
                   help="blur shapes of the samples, as 'blurnet fit --psf-families' (training and validation)")
    p.add_argument("--palette-share", type=float, default=AugmentConfig.palette_probability,
                   help="share of the samples saved as dithered palette images, as 'blurnet fit --palette-share'")
    p.add_argument("--generated-scenes", type=int, default=0,
                   help="dead-leaves scenes added to the training photographs, as 'blurnet fit --generated-scenes' "
                        "(every worker makes its own copy: about 0.5 s and 1.7 MB a scene)")
    p.add_argument("--seed", type=int, default=0, help="split seed (0 keeps the bundled model's split)")
    p.add_argument("--data-seed", type=int, default=1, help="seed of the training batches")
    p.add_argument("--mixed-precision", action="store_true")
    p.add_argument("--parameter-head", action=argparse.BooleanOptionalAction, default=True,
                   help="train the blur-parameter head with the classifier (default: on)")
    p.add_argument("--parameter-loss-weight", type=float, default=1.0)
    args = p.parse_args(argv)
    if args.generated_scenes < 0:
        p.error(f"--generated-scenes must be >= 0, got {args.generated_scenes!r}")
    for name in ("batch_size", "val_every", "val_images", "workers"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)!r}")
    for name in ("lr", "minutes"):
        if not getattr(args, name) > 0:
            p.error(f"--{name} must be > 0, got {getattr(args, name)!r}")
    if args.image_size < MIN_IMAGE_SIDE:
        p.error(f"--image-size must be >= {MIN_IMAGE_SIDE}, got {args.image_size!r}")
    try:
        AugmentConfig.with_palette_share(args.palette_share)
    except ValueError as error:
        p.error(f"--palette-share: {error}")
    return args


def folder_problem(args) -> str | None:
    """Why `args.init_from` or `args.out` cannot serve, or None: the starting folder must hold a `blurnet.json`; the
    output folder must be new, empty or one this command wrote (`train_keras.json`), and not the starting folder,
    since its weight files and JSON files are replaced."""
    out, start = Path(args.out), Path(args.init_from)
    if not (start / "blurnet.json").is_file():
        return f"--init-from {args.init_from!r} holds no blurnet.json: not a blurnet export or a folder this command wrote"
    if out.exists() and (not out.is_dir() or out.resolve() == start.resolve()
                         or (any(out.iterdir()) and not (out / "train_keras.json").is_file())):
        return (f"--out {args.out!r} must be a new or empty folder, or one this command wrote (train_keras.json), "
                "and not --init-from: its files would be replaced")
    return None


def validation_maker(args, photos) -> BlurBatchMaker:
    """The validation batch maker over `photos`: `args`' PSF families, with the augmentation and camera steps of
    training (as `blurnet fit` validates), so that the best weights are the best on what the model will meet."""
    config = pipeline_config(args.image_size, 64, args.seed, args.psf_families, args.palette_share)
    return BlurBatchMaker(photos, config, "val", augment=True)


def _validation_batches(args) -> tuple[list, list[str]]:
    """The fixed validation images (split by photograph as `blurnet fit` splits them) and their photographs."""
    splits = bundled_splits(args.image_size, args.seed)
    maker = validation_maker(args, splits["val"])
    return [maker.make_batch(i) for i in range(-(-args.val_images // 64))], maker.photo_names


def load_starting_weights(model, folder: Path) -> None:
    """Weights from `folder`: its `weights.json` and `.npz` parts, its `model.keras`, or a blurnet export's SavedModel
    variables (read without TensorFlow, `blurnet.checkpoint`); a `ValueError` naming what it looked for otherwise."""
    if (folder / WEIGHTS_MANIFEST).is_file():
        load_npz_weights(model, folder)
    elif (folder / "model.keras").is_file():
        model.load_weights(folder / "model.keras")
    elif (folder / "variables" / "variables.index").is_file():
        from blurnet.checkpoint import load_export_variables

        load_export_variables(model, folder)
    else:
        old_parts = " (it has weights-*.npz but no weights.json naming them: parts of an interrupted save or of an older format)" \
            if any(folder.glob("weights-*.npz")) else ""
        raise ValueError(f"{str(folder)!r} holds none of weights.json, model.keras or a SavedModel's "
                         f"variables/variables.index{old_parts}: pass a blurnet export or a folder this command wrote.")


def _build_model(args):
    """The export's network (its backbone and branches from its `blurnet.json`) with its weights, compiled with
    AdamW (the learning rate is set before each step)."""
    import keras

    from blurnet.model import copy_shared_weights, create_model
    from blurnet.parameter_head import compile_arguments

    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    source = json.loads((Path(args.init_from) / "blurnet.json").read_text())
    architecture = dict(backbone=source.get("backbone", "densenet121"), weights=None, spectrum=source.get("spectrum", False),
                        highpass=source.get("highpass", False))
    model = create_model(**architecture, parameter_head=args.parameter_head)
    if bool(source.get("parameter_head", False)) == args.parameter_head:
        load_starting_weights(model, Path(args.init_from))
    else:  # with or without the head: every other layer is taken over
        start = create_model(**architecture, parameter_head=bool(source.get("parameter_head", False)))
        load_starting_weights(start, Path(args.init_from))
        left = copy_shared_weights(start, model)
        print(f"weights: {', '.join(left) or 'none'} start from random weights", flush=True)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=args.lr, weight_decay=1e-4), jit_compile=True,
                  **compile_arguments(model, args.parameter_loss_weight))
    return model


def _validate(model, batches) -> dict:
    """`val_accuracy` on the validation batches `(images, labels, params)`, and with the parameter head its errors
    (`blurnet.metrics.parameter_metrics`, keys prefixed `val_`)."""
    from blurnet.metrics import parameter_metrics
    from blurnet.parameter_head import PARAMETERS, class_probabilities

    outputs = [model.predict_on_batch(x) for x, _, _ in batches]
    labels = np.concatenate([y for _, y, _ in batches])
    predicted = np.concatenate([np.argmax(np.asarray(class_probabilities(o)), axis=1) for o in outputs])
    scores = {"val_accuracy": float((predicted == labels).mean())}
    if isinstance(outputs[0], dict):
        raw = np.concatenate([np.asarray(o[PARAMETERS]) for o in outputs])
        errors = parameter_metrics(labels, np.concatenate([p for _, _, p in batches]), raw)
        scores.update({f"val_{k}": v for k, v in errors.items() if k.endswith(("_mae", "_mae_deg"))})
    return scores


def _train(model, batches, val_batches, args, out: Path, started: float) -> dict:
    """The time-boxed loop: warm-up then a cosine over the clock, validation every `val_every` steps, best kept on disk."""
    from blurnet.model import create_training_variables
    from blurnet.parameter_head import PARAMETERS, PROBABILITIES, accuracy_key, has_parameter_head

    budget, history = 60.0 * args.minutes, []
    start = _validate(model, val_batches)
    best_val, best_weights = start["val_accuracy"], model.get_weights()
    print(f"start: {json.dumps(start)}", flush=True)
    train_start, step, seen, window = None, 0, 0, []
    for images, labels, packed in batches:
        elapsed = time.time() - train_start if train_start else 0.0
        cosine = 0.5 * (1.0 + np.cos(np.pi * min(1.0, elapsed / budget)))
        model.optimizer.learning_rate = args.lr * min(1.0, (step + 1) / 200.0) * cosine
        targets = {PROBABILITIES: labels, PARAMETERS: packed} if has_parameter_head(model) else labels
        if step == 0:  # the variables exist before the first step: TensorFlow traces it once (no effect on JAX's jit)
            create_training_variables(model, images.astype("float32"), targets)
        logs = model.train_on_batch(images.astype("float32"), targets, return_dict=True)
        loss, accuracy = logs["loss"], logs[accuracy_key(model)]
        step += 1
        window.append((float(loss), float(accuracy)))
        if step == 5:
            train_start, seen = time.time(), 0  # compilation done
        seen += len(labels)
        if step % 100 == 0:
            print(f"step {step}: {seen / (time.time() - train_start):.0f} images/s, lr {float(model.optimizer.learning_rate):.2e}", flush=True)
        done = bool(train_start) and time.time() - train_start > budget
        if step % args.val_every == 0 or done:
            scores = _validate(model, val_batches)
            val = scores["val_accuracy"]
            mean_loss, mean_acc = np.mean(window, axis=0)
            history.append({"step": step, "loss": mean_loss, "accuracy": mean_acc, **scores,
                            "minutes": (time.time() - started) / 60})
            window = []
            print(json.dumps(history[-1]), flush=True)
            if val >= best_val:  # kept on disk at once, so a run killed at its time limit still leaves its best
                best_val, best_weights = val, model.get_weights()
                save_npz_weights(best_weights, out)
            if done:
                break
    if not (out / WEIGHTS_MANIFEST).is_file():
        save_npz_weights(best_weights, out)
    return {"steps": step, "images": step * args.batch_size, "images_per_s": seen / (time.time() - train_start) if train_start else None,
            "best_val_accuracy": best_val, "history": history}


def _write_metadata(args, out: Path, summary: dict, pipeline: PipelineConfig) -> None:
    """`train_keras.json`, and the `blurnet.json` that `fit --init-from OUT` checks and chains under `started_from`;
    it records the PSF families and camera steps of `pipeline` as `blurnet fit` does, so that a re-export
    (`fit --init-from OUT --epochs-finetune 0`) records what the weights learnt from."""
    with atomic_file(out / "train_keras.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    source = json.loads((Path(args.init_from) / "blurnet.json").read_text())
    keep = ("classes", "backbone", "highpass", "spectrum", "tile_size", "test_time_views")
    with atomic_file(out / "blurnet.json") as tmp:
        tmp.write_text(json.dumps({
            **{k: source[k] for k in keep if k in source}, "image_size": args.image_size, "parameter_head": args.parameter_head,
            "blur_ranges": pipeline.ranges.to_dict(), "psf_families": pipeline.families.to_dict(),
            "camera": pipeline.camera_record(), "generated_scenes": args.generated_scenes,
            "weights": weights_origin(source), "init_from": str(args.init_from), "command": summary["command"], "hardware": hardware(),
            "wall_time_s": summary["wall_time_s"], "training": summary, "started_from": source}, indent=1))


def main(argv=None) -> dict:
    """Fine-tune and write the weights; returns the summary written to `train_keras.json`."""
    args = parse_args(argv)
    problem = folder_problem(args)  # before anything is deleted or built
    if problem:
        raise SystemExit(f"python -m blurnet.train_keras: error: {problem}")
    out, started = Path(args.out), time.time()
    # Step 1, data: the bundled photographs split as `blurnet fit` splits them (by photograph, from the seed).
    maker_args = (args.image_size, args.batch_size, args.seed, args.data_seed, args.psf_families, args.generated_scenes,
                  args.palette_share)
    train_config = pipeline_config(args.image_size, args.batch_size, args.data_seed, args.psf_families, args.palette_share)
    val_batches, val_names = _validation_batches(args)
    # Worker processes are spawned (not forked: a fork inherits locked thread pools) before the backend starts.
    pool = multiprocessing.get_context("spawn").Pool(args.workers, initializer=_start_worker, initargs=maker_args)
    # Step 2, model: the same network as the export, with its weights.
    model = _build_model(args)
    import keras

    print(f"backend {keras.backend.backend()}, {model.count_params():,} parameters; validation: {', '.join(val_names)}", flush=True)
    # Step 3, the metadata first: best weights are saved as soon as they are found, so a run killed at its time
    # limit leaves them beside a blurnet.json of this run (`"finished": false`), never of an earlier one.
    run = {
        "command": "python -m blurnet.train_keras " + " ".join(sys.argv[1:] if argv is None else argv),
        "backend": keras.backend.backend(), "batch_size": args.batch_size,
        "pipeline": {"image_size": args.image_size, "psf_families": args.psf_families, "families": train_config.families.to_dict(),
                     "camera": train_config.camera_record(), "generated_scenes": args.generated_scenes},
    }
    # An earlier run's weights are not this one's: deleted now that the data and the model are ready (a broken
    # --init-from or a Ctrl-C before this point leaves them and their metadata as they were).
    for stale in [out / WEIGHTS_MANIFEST, *out.glob("weights-*.npz")]:
        stale.unlink(missing_ok=True)
    _write_metadata(args, out, {**run, "finished": False, "wall_time_s": None}, train_config)
    # Step 4, train for the time budget.
    batches = _batches(pool, 0, ahead=4 * args.workers)
    try:
        trained = _train(model, batches, val_batches, args, out, started)
    finally:
        batches.close()
        pool.terminate()
    summary = {**run, **trained, "finished": True, "wall_time_s": time.time() - started}
    # Step 5, the metadata again, with the training's figures.
    _write_metadata(args, out, summary, train_config)
    print(f"best val accuracy {summary['best_val_accuracy']:.4f}; wrote {out}", flush=True)
    return summary


if __name__ == "__main__":
    main()
