"""`fit`: train a blurnet model and export it, in clearly named steps.

    _prepare_run (devices, strategy, run folder) -> _build (load_data, create_model, check_run_architecture, datasets)
    -> _train_stages (train_head, train_finetune) -> evaluate_held_out -> _metadata -> _export

Stage 1 trains the head on a frozen pretrained backbone. Stage 2 unfreezes the backbone from a transition
boundary (see `blurnet.model.set_trainable_from`) with a lower, cosine-decayed learning rate. From random
initialisation (`weights=None`) stage 1 is skipped: a random backbone has no features worth freezing. Each stage
checkpoints every epoch (`blurnet.callbacks.CrashSafeBackup`, written atomically) so `resume=True` continues an interrupted run from its
last completed epoch with the optimizer state.
"""
from __future__ import annotations

import collections
import logging
import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from blurnet.atomic import atomic_file, check_apart, check_replaceable
from blurnet.callbacks import backup_epoch, stopped_early, training_callbacks
from blurnet.config import FitConfig
from blurnet.distribute import (configure_cpu_devices, create_strategy, is_chief, prepare_for_multiworker,
                                scaled_learning_rate, set_precision, shard_off, worker_index)
from blurnet.export import EXPORT_MARKERS, export_model, load_export_weights, read_metadata
from blurnet.loaded_model import weights_origin
from blurnet.metrics import classification_metrics, parameter_metrics
from blurnet.model import (create_model, create_training_variables, freeze_all_but_parameter_head, freeze_backbone,
                           set_trainable_from, synchronize_batchnorm)
from blurnet.parameter_head import (PARAMETERS, PROBABILITIES, accuracy_key, compile_arguments, has_parameter_head,
                                    with_parameter_targets)
from blurnet.quiet import device_line, stderr_silenced
from blurnet.views import ANSWER_VIEW_SIGNS, average_over_views
from data_pipeline.classes import CLASS_NAMES, NUM_CLASSES, BlurRanges
from data_pipeline.dataset import BlurBatchMaker, PipelineConfig
from data_pipeline.degrade import PsfFamilies
from data_pipeline.labelled import LabelledBatchMaker, is_labelled_folder, load_labelled_images, split_labelled
from data_pipeline.scenes import generated_scenes
from data_pipeline.sources import describe_split, load_photographs, split_photographs

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Data:
    """Train/val/test batch makers and a description for the metadata."""

    train: object
    val: object
    test: object
    description: str
    held_out_files: dict | None = None  # a labelled folder's test files per class: its test crops are cut from them


def describe_devices() -> tuple[str, list]:
    """("gpu" or "cpu", the GPUs found); logs them in one line (`device: CPU (2 cores), no GPU`)."""
    with stderr_silenced():  # without a GPU, the driver query logs an error (cuInit 303) the user cannot act on
        gpus = tf.config.list_physical_devices("GPU")
    logger.info(device_line(gpus))
    return ("gpu" if gpus else "cpu"), gpus


def fit_verbosity(stream=None) -> int:
    """Keras `verbose` for `model.fit`: 1 (progress bar) on a terminal, else 2 (one line per epoch)."""
    stream = sys.stdout if stream is None else stream
    try:
        return 1 if stream.isatty() else 2
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return 2


#: FitConfig fields that only shape generated samples: a labelled folder refuses any but their defaults.
GENERATED_ONLY = ("generated_scenes", "palette_share", "blur_ranges", "psf_families", "min_sharpness")


def load_data(config: FitConfig, pipeline: PipelineConfig, worker: int = 0) -> Data:
    """Batch makers for the three splits, from sharp photographs or a labelled folder.

    `worker` gives each data-parallel worker its own training stream; validation
    and test sets are the same on every worker.
    """
    if config.data is not None and is_labelled_folder(config.data):
        for key in GENERATED_ONLY:  # settings of the samples generated from sharp photographs
            default, value = getattr(FitConfig, key), getattr(config, key)
            if value != default:
                raise ValueError(f"{key} is a setting of generated samples; a labelled folder ({config.data}) trains on "
                                 f"its images as they are: leave {key} at {default!r}, got {value!r}.")
        images, labels, paths = load_labelled_images(config.data, min_size=pipeline.image_size)
        parts = split_labelled(labels, config.seed)
        for c in sorted(set(labels[parts["train"]].tolist()) - set(labels[parts["test"]].tolist())):
            logger.warning(f"{CLASS_NAMES[c]}: {int((labels == c).sum())} labelled image(s), fewer than 3: all used for "
                           f"training, none held out (the held-out figures leave the class out)")
        makers = {}
        for stream, (split, idx) in enumerate(parts.items()):
            makers[split] = LabelledBatchMaker([images[i] for i in idx], labels[idx], pipeline.image_size, pipeline.batch_size,
                                               config.seed, stream=stream + (100 * worker if split == "train" else 0), flips=split == "train")
            logger.info(f"{split:>5}: {len(idx)} labelled images")
        test_files = {CLASS_NAMES[c]: int((labels[parts["test"]] == c).sum()) for c in sorted(set(labels[parts["test"]].tolist()))}
        return Data(makers["train"], makers["val"], makers["test"], f"labelled folder {config.data} ({len(images)} images, "
                    f"split by file within each class)", held_out_files=test_files)
    photos = load_photographs(config.data, min_size=pipeline.image_size)
    splits = split_photographs(photos, seed=config.seed)
    logger.info(describe_split(splits))
    missing = [s for s, v in splits.items() if not v]
    if missing:
        raise ValueError(f"too few photographs to split: {', '.join(missing)} got none (need at least 3 photographs).")
    scenes = generated_scenes(config.generated_scenes, seed=config.seed)
    if scenes:
        logger.info(f"train: and {len(scenes)} generated dead-leaves scenes (data_pipeline.scenes)")
    source = "bundled photographs (scikit-image, scikit-learn)" if config.data is None else f"photographs in {config.data}"
    # Validation draws what training draws (augmentation and camera steps, a fixed set all the same), so early
    # stopping and the best checkpoint follow the images the model will meet; the held-out test stays without
    # them, comparable between models (`benchmarks/accuracy.py` measures JPEG and palette images separately).
    makers = {s: BlurBatchMaker(splits[s] + (scenes if s == "train" else []), pipeline, s, worker=worker if s == "train" else 0,
                                augment=s != "test") for s in ("train", "val", "test")}
    scene_names = {scene.name for scene in scenes}
    used = {s: [name for name in makers[s].photo_names if name not in scene_names] for s in ("train", "val", "test")}
    if scenes:
        used["train"].append(f"and {sum(name in scene_names for name in makers['train'].photo_names)} generated dead-leaves scenes")
    description = f"{source}, blurred on the fly; split by photograph: " + "; ".join(
        f"{s}: {', '.join(used[s])}" for s in ("train", "val", "test"))
    left_out = {name: why for s in ("train", "val", "test") for name, why in makers[s].left_out.items()}
    if left_out:
        description += "; left out: " + ", ".join(f"{name} ({why})" for name, why in left_out.items())
    return Data(makers["train"], makers["val"], makers["test"], description)


# Training images per second at 128 px (about (128 / size) ** 1.5 times that at other sizes). CPU: DenseNet121 with the
# spectral branch on 2 cores, from the bundled model's 64 px run (60 epochs x 100 steps of 32 in 65 min: ~53 images/s
# at 64 px). GPU: not measured here.
TRAIN_RATE_128 = {"cpu": 19.0, "gpu": 800.0}
# Images per second of inference against training: validation runs inside Keras' compiled loop; the held-out views
# are direct model calls (measured on 2 CPU cores at 64 px: 512 images x 8 views in 50 s within a fit, about 1.5x the
# training rate; 2.4x in the bundled model's 96 px re-export).
VALIDATION_SPEEDUP = 3.0
HELD_OUT_SPEEDUP = 2.0
# Graph building and the first step of each training stage: 30 s for DenseNet121 with the spectral branch at 64 px on
# 2 CPU cores, the training variables made before tracing, TensorFlow already started (`python benchmarks/fit_start.py
# --rounds 2`; 46 s without); 45 s leaves room for TensorFlow's start-up and the validation step's graph.
BUILD_SECONDS_PER_STAGE = 45.0
EXPORT_SECONDS = 15.0  # tracing `serve` (8 views, tiles) and writing the SavedModel: 12 s measured


def estimate_parts(config: FitConfig, device: str) -> dict[str, float]:
    """Rough wall time in seconds of each part of `fit` on `device` ("cpu" or "gpu").

    `build`: graph building, once per training stage; `train`: the training steps; `validate`: the validation set
    after every epoch; `held_out`: the held-out test set, each image seen `test_time_views` times; `export`.
    Validation and test sets count in whole batches, as `fit` runs them.
    """
    rate = TRAIN_RATE_128[device] * (128.0 / config.image_size) ** 1.5
    stages = [n for n in ((config.epochs_head if config.weights is not None else 0), config.epochs_finetune) if n]
    epochs = sum(stages)
    val_images = -(-config.val_images // config.batch_size) * config.batch_size
    test_images = -(-config.test_images // config.batch_size) * config.batch_size
    return {
        "build": BUILD_SECONDS_PER_STAGE * len(stages),
        "train": epochs * config.steps_per_epoch * config.batch_size / rate,
        "validate": epochs * val_images / (VALIDATION_SPEEDUP * rate),
        "held_out": test_images * config.test_time_views / (HELD_OUT_SPEEDUP * rate),
        "export": EXPORT_SECONDS,
    }


def estimate_minutes(config: FitConfig, device: str) -> float:
    """Rough wall time of the whole `fit` in minutes: the sum of `estimate_parts`."""
    return sum(estimate_parts(config, device).values()) / 60.0


def compile_model(model: keras.Model, learning_rate, jit: bool = False, parameter_loss_weight: float = 1.0,
                  class_loss_weight: float = 1.0) -> None:
    """Adam + sparse categorical cross-entropy + accuracy (XLA when `jit`), plus the parameter head's loss
    weighted `parameter_loss_weight` when the model has one (`blurnet.parameter_head.compile_arguments`); the
    class loss weighted `class_loss_weight` (0 when the head trains alone).

    Call it inside the strategy's scope: the optimizer's variables are created here.
    """
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), jit_compile=True if jit else "auto",
                  **compile_arguments(model, parameter_loss_weight, class_loss_weight))


def fit_stage(model: keras.Model, config: FitConfig, data_sets, strategy, callbacks, epochs: int,
              initial_epoch: int = 0, first_epoch: int | None = None) -> None:
    """`model.fit` on the (train, val) datasets up to epoch `epochs`, `steps_per_epoch` steps each. The training
    set may be given as `train(start)`, the dataset from batch `start` on: it then starts at `first_epoch` (the
    epoch the stage really begins with, a resumed one's included; default `initial_epoch`) times the steps, so no
    stage and no resume trains again on the batches of earlier epochs. Without an
    explicit strategy the compiled model's training variables are created first, on a zero batch shaped as the
    training data (`blurnet.model.create_training_variables`): the training step is then traced once, not twice.
    Under an explicit strategy Keras creates them itself before tracing."""
    train_ds, val_ds = data_sets
    if callable(train_ds):
        train_ds = train_ds((initial_epoch if first_epoch is None else first_epoch) * config.steps_per_epoch)
    with strategy.scope():
        if not tf.distribute.has_strategy():
            zeros = tf.nest.map_structure(lambda spec: tf.zeros([1, *spec.shape[1:]], spec.dtype), train_ds.element_spec)
            create_training_variables(model, *keras.utils.unpack_x_y_sample_weight(zeros))
    model.fit(train_ds, validation_data=val_ds, initial_epoch=initial_epoch, epochs=epochs,
              steps_per_epoch=config.steps_per_epoch, callbacks=callbacks, verbose=fit_verbosity(),
              shuffle=False)  # the dataset is already shuffled


def run_stage(model, config: FitConfig, data_sets, strategy, run: Path, stage: str, monitor: str, mode: str = "max",
              epochs: int = 1, initial_epoch: int = 0) -> None:
    """`fit_stage` with the stage's callbacks (`training_callbacks`, early stopping on `monitor`), unless a resumed
    run's `stage` had already stopped early (`blurnet.callbacks.stopped_early`): its epochs are not trained again,
    and the model keeps the weights it has until `_train_stages` loads the run's best checkpoint (the last stage
    only: stage 2 or the parameter head)."""
    stopped = stopped_early(run, stage, monitor, config.patience, mode)
    if stopped is not None:
        logger.info(f"stage {stage}: stopped early after epoch {stopped + 1} before the run was interrupted; not "
                    "trained again")
        return
    fit_stage(model, config, data_sets, strategy, training_callbacks(run, stage, config.patience, monitor, mode),
              epochs=epochs, initial_epoch=initial_epoch, first_epoch=max(initial_epoch, backup_epoch(run, stage)))


def train_head(model, config: FitConfig, data_sets, run: Path, strategy) -> None:
    """Stage 1: backbone frozen, head trained at `lr_head` (scaled to the global batch)."""
    freeze_backbone(model)
    learning_rate = scaled_learning_rate(config.lr_head, config.batch_size)
    with strategy.scope():
        compile_model(model, learning_rate, config.jit, config.parameter_loss_weight)
    logger.info(f"stage 1 (head): {config.epochs_head} epochs x {config.steps_per_epoch} steps, lr {learning_rate:g}")
    # Not `run_stage`: stage 1 has its own done-marker, and its weights must come back from its backup even after
    # an early stop (Keras restores them on the first epoch of a resumed fit)
    fit_stage(model, config, data_sets, strategy, training_callbacks(run, "head", config.patience, f"val_{accuracy_key(model)}"),
              epochs=config.epochs_head, first_epoch=backup_epoch(run, "head"))
    with atomic_file(run / "head.weights.h5") as tmp:  # its presence means "stage 1 done"
        model.save_weights(tmp)


def compile_cosine(model, config: FitConfig, strategy, class_loss_weight: float = 1.0) -> float:
    """Compile `model` for `epochs_finetune` epochs at `lr_finetune` (scaled to the global batch), cosine-decayed
    to 5 %, the losses weighted as `compile_model` does; returns the starting learning rate."""
    steps = max(1, config.epochs_finetune * config.steps_per_epoch)
    learning_rate = scaled_learning_rate(config.lr_finetune, config.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps, alpha=0.05)
    with strategy.scope():
        compile_model(model, schedule, config.jit, config.parameter_loss_weight, class_loss_weight)
    return learning_rate


def train_finetune(model, config: FitConfig, data_sets, run: Path, initial_epoch: int, strategy) -> None:
    """Stage 2: unfreeze from `unfreeze_from`, cosine-decayed `lr_finetune` (scaled to the global batch)."""
    trainable = set_trainable_from(model, config.unfreeze_from, freeze_batchnorm=bool(config.freeze_batchnorm))
    learning_rate = compile_cosine(model, config, strategy)
    logger.info(f"stage 2 (fine-tune from {config.unfreeze_from}, BatchNormalization "
          f"{'frozen' if config.freeze_batchnorm else 'training'}): {len(trainable)} backbone layers trainable, "
          f"{config.epochs_finetune} epochs x {config.steps_per_epoch} steps, lr {learning_rate:g} cosine")
    run_stage(model, config, data_sets, strategy, run, "finetune", f"val_{accuracy_key(model)}",
              epochs=initial_epoch + config.epochs_finetune, initial_epoch=initial_epoch)


def train_parameter_head(model, config: FitConfig, data_sets, run: Path, strategy) -> None:
    """`freeze_classifier`: only the parameter head trains, `epochs_finetune` epochs at `lr_finetune` (cosine); every
    layer the probabilities depend on keeps its weights (and its BatchNormalization statistics), so the class
    answers stay those of the `--init-from` export. The class loss is logged but weighs 0 in `loss` (nothing it
    depends on trains). The best checkpoint is the lowest validation parameter loss."""
    trainable = freeze_all_but_parameter_head(model)
    learning_rate = compile_cosine(model, config, strategy, class_loss_weight=0.0)  # `loss`: what trains, the head's
    logger.info(f"parameter head alone (classifier frozen): layers {', '.join(trainable)} trainable, "
                f"{config.epochs_finetune} epochs x {config.steps_per_epoch} steps, lr {learning_rate:g} cosine")
    run_stage(model, config, data_sets, strategy, run, "parameters", f"val_{PARAMETERS}_loss", mode="min",
              epochs=config.epochs_finetune)


def evaluate_held_out(model, maker, config: FitConfig) -> dict:
    """Accuracy, macro-F1 and per-class metrics on the fixed test split, averaged over
    `config.test_time_views` views as the export will be; with the parameter head, its errors under
    `parameters` (`blurnet.metrics.parameter_metrics`), averaged over the same views as `blurnet predict --full`."""
    num_batches = -(-config.test_images // config.batch_size)
    logger.info(f"held-out test: {num_batches * config.batch_size} images x {config.test_time_views} view(s)")
    ys, ps, truths, raws = [], [], [], []
    head = has_parameter_head(model)
    started, reported = time.time(), time.time()

    def answer(views):  # the probabilities, then the head's raw parameters
        # A direct call, not predict_on_batch: under a tf.distribute strategy the latter
        # returns a row per replica and example; held-out evaluation needs no collectives.
        out = model(views, training=False)
        return tf.concat([out[PROBABILITIES], out[PARAMETERS]], axis=-1) if head else out

    for batch, (x, y, params) in enumerate(maker.dataset(num_batches=num_batches, with_params=True), start=1):
        answers = np.asarray(average_over_views(answer, x, config.test_time_views, ANSWER_VIEW_SIGNS if head else None))
        ps.append(answers[:, :NUM_CLASSES])
        ys.append(y.numpy())
        if head:
            truths.append(params.numpy())
            raws.append(answers[:, NUM_CLASSES:])
        if batch < num_batches and time.time() - reported >= 15:  # a line every 15 s or so, never a carriage return
            reported = time.time()
            logger.info(f"held-out test: {batch}/{num_batches} batches, {reported - started:.0f} s")
    metrics = classification_metrics(np.concatenate(ys), np.concatenate(ps))
    if head:
        metrics["parameters"] = parameter_metrics(np.concatenate(ys), np.concatenate(truths), np.concatenate(raws))
    logger.info(f"held-out test: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} on {metrics['n_images']} images, "
          f"{config.test_time_views} view(s) each")
    return metrics


#: The first file `fit` writes into a run folder (`run_start_time`): what marks a folder a new run may replace.
RUN_MARKER = "started_at"


def run_start_time(run: Path, now: float) -> float:
    """When the run in folder `run` first started: read from `run/started_at` (`RUN_MARKER`), written there with
    `now` if absent.

    A resumed run keeps the first start, so its metadata can give the time since then (interruptions included)
    beside the time of the resuming process.
    """
    path = run / RUN_MARKER
    if path.is_file():
        return float(path.read_text())
    with atomic_file(path) as tmp:
        Path(tmp).write_text(f"{now}\n")
    return now


def weight_shapes_signature(model: keras.Model) -> str:
    """A short fingerprint of every weight's name and shape in `model`: equal exactly when checkpoints fit both."""
    shapes = sorted(f"{weight.path}:{tuple(weight.shape)}" for weight in model.weights)
    return hashlib.sha256("\n".join(shapes).encode()).hexdigest()[:16]


#: Settings a resumed run must share with its first epochs, beside the architecture: the data (another `seed`
#: splits the photographs anew, so a training photograph could land in the held-out test), the crops, the steps
#: and the learning rates its schedule and best checkpoint rest on, where its weights came from.
RESUME_KEEPS = ("data", "seed", "image_size", "batch_size", "steps_per_epoch", "lr_head", "lr_finetune", "unfreeze_from",
                "min_sharpness", "weights", "init_from", "epochs_head", "parameter_loss_weight", "mixed_precision")

# What a run folder recorded before these keys existed trained with: generated scenes came later and were none.
_RECORDED_BEFORE_KEY_EXISTED = {"generated_scenes": 0, "palette_share": FitConfig.palette_share, "motion_softness": 0.0,
                                "blur_ranges": BlurRanges().to_dict(), "underexposure": [0.0, [0.25, 0.8]]}


def check_run_architecture(run: Path, config: FitConfig, model: keras.Model) -> None:
    """Record in `run/architecture.json` what the run's checkpoints are shaped by and the PSF families it trains on,
    or check a resumed run against it.

    `ValueError` naming both settings when a resume would load backups of another shape (say the parameter head
    switched on or off, or its layers changed since the run started: `weight_shapes`, `weight_shapes_signature`):
    Keras would fail later with a bare shape error. Other `psf_families` (or another `motion_softness` under the same
    preset name), `palette_share`, `blur_ranges`, `generated_scenes` or underexposure jitter are refused too: the
    run would go on on other data than its first epochs and its record would name one of the two; another
    `freeze_batchnorm`, which would train statistics the first epochs kept (or the reverse); and another value of
    any of `RESUME_KEEPS` (the data, seed, crops, steps, stage-1 epochs, learning rates, the parameter loss's
    weight, the precision and the starting weights). Another `epochs_finetune` is allowed, to lengthen a run: the
    cosine schedule then spans the new count from the first epoch on, so the learning rate of the epochs still to
    come is that of the longer schedule (higher than where the shorter one had decayed to). Under
    `freeze_classifier` every statistic is kept whatever that flag says, so such a run records it as `True` and
    resumes with or without `--freeze-batchnorm`. A run folder
    recorded without some of these keys is checked on the others (a missing `generated_scenes`, `motion_softness` or
    `underexposure` counts as 0, a missing `palette_share` or `blur_ranges` as the default),
    then gets them.
    """
    wanted = {"backbone": config.backbone, "spectrum": config.spectrum, "highpass": config.highpass,
              "parameter_head": bool(config.parameter_head), "weight_shapes": weight_shapes_signature(model),
              "psf_families": config.psf_families, "generated_scenes": config.generated_scenes,
              "palette_share": config.palette_share, "blur_ranges": config.ranges().to_dict(),
              "motion_softness": PsfFamilies.named(config.psf_families).motion_softness,  # the preset's mix, as of now
              "underexposure": [config.augment().underexposure_probability, list(config.augment().underexposure_gain)],
              "freeze_batchnorm": bool(config.freeze_batchnorm or config.freeze_classifier),
              **{key: getattr(config, key) for key in RESUME_KEEPS}}
    path = run / "architecture.json"
    if path.is_file():
        written = json.loads(path.read_text())
        recorded = {**_RECORDED_BEFORE_KEY_EXISTED, **written}  # a run recorded before the option existed had its default
        differing = {key: (recorded[key], value) for key, value in wanted.items() if key in recorded and recorded[key] != value}
        if differing:
            details = ", ".join(f"{key}: run {old!r}, now {new!r}" for key, (old, new) in differing.items())
            if set(differing) == {"weight_shapes"}:
                details += " (the same settings, but layers of other shapes: the model's code changed since the run started)"
            raise ValueError(f"cannot resume {str(run)!r}: it does not match this run ({details}); "
                             f"resume with the run's settings or start afresh without --resume.")
        if written.keys() >= wanted.keys():
            return
    with atomic_file(path) as tmp:  # a new run, or an older record completed with what it lacked
        Path(tmp).write_text(json.dumps(wanted, indent=2) + "\n")


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and Keras with `seed` and turn on TensorFlow's op determinism.

    Ops then pick deterministic kernels (or fail where none exists) and tf.data keeps its order, so that a rerun
    on the same machine repeats the weights. It holds for the rest of the process.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


# What `fit` settles before it loads data: the device, the GPUs, the --init-from export's metadata
# (or None), the precision policy, the strategy, this worker, whether it is the chief, its run folder.
_Run = collections.namedtuple("_Run", "device gpus started_from policy strategy worker chief folder first_started")


def _check_split_seed(config: FitConfig, started_from: dict | None) -> None:
    """`ValueError` when `--init-from` an export trained on the same photographs with another seed: this run would
    split them anew, and its held-out test could hold photographs the starting weights trained on."""
    source = (started_from or {}).get("fit_config") or {}
    if "seed" in source and source.get("data") == config.data and int(source["seed"]) != config.seed:
        raise ValueError(f"{config.init_from!r} was trained on the same photographs with seed {source['seed']}; seed "
                         f"{config.seed} would split them anew and test on photographs it trained on: use --seed {source['seed']}.")


def _reexport_ranges(config: FitConfig, started_from: dict) -> FitConfig:
    """`config` with the blur ranges the re-exported weights were trained with (the defaults where the source
    recorded none); `ValueError` naming both when `blur_ranges` asks for others: nothing trains on them."""
    source = BlurRanges.from_dict(started_from.get("blur_ranges") or {})
    if config.blur_ranges and config.ranges() != source:
        raise ValueError(f"a re-export (--epochs-finetune 0) keeps the blur ranges its weights were trained with, "
                         f"{source.to_dict()}; got blur_ranges={config.blur_ranges!r}.")
    return dataclasses.replace(config, blur_ranges=None if source == BlurRanges() else source.to_dict())


def resolve_parameter_head(config: FitConfig, started_from: dict | None) -> bool:
    """Whether `fit` trains the parameter head: `config.parameter_head` when set, else on unless nothing would
    train it (a labelled folder has no blur parameters; a re-export, `epochs_finetune=0`, keeps the `--init-from`
    export's choice). A `ValueError` when an explicit `True` would export a head that nothing trained."""
    labelled = config.data is not None and is_labelled_folder(config.data)
    reexport = started_from is not None and config.epochs_finetune == 0
    source_head = bool((started_from or {}).get("parameter_head", False))
    if config.parameter_head is None:
        return source_head if reexport else not labelled
    if config.parameter_head and labelled:
        raise ValueError(f"a labelled folder ({config.data!r}) has no blur parameters to train the parameter head on; "
                         "use --no-parameter-head.")
    if config.parameter_head and reexport and not source_head:
        raise ValueError(f"{config.init_from!r} has no parameter head and --epochs-finetune 0 trains nothing: "
                         "use --no-parameter-head, or train some epochs.")
    return bool(config.parameter_head)


def _checked_parameter_head(config: FitConfig, started_from: dict | None) -> bool:
    """`resolve_parameter_head`, and a `ValueError` where `freeze_classifier` would leave nothing to train."""
    head = resolve_parameter_head(config, started_from)
    if config.freeze_classifier and not head:
        raise ValueError(f"--freeze-classifier trains only the parameter head, which this run would not have "
                         f"(data {config.data!r}, epochs_finetune {config.epochs_finetune!r}).")
    return head


def set_aside_folder(run: Path) -> Path:
    """Where a new run without `resume` moves the earlier run of its folder (`run.replaced`) until its data and model
    are built: a mistyped `--data` or a Ctrl-C while loading puts the earlier run back, checkpoints included."""
    return run.with_name(run.name + ".replaced")


def restore_set_aside(run: Path) -> None:
    """Put back the earlier run `set_aside_folder(run)` holds, if any, over what the new run had written."""
    aside = set_aside_folder(run)
    if aside.is_dir():
        if run.exists():
            shutil.rmtree(run)
        aside.rename(run)
        logger.info(f"{str(run)!r}: the earlier run put back")


def discard_set_aside(run: Path) -> None:
    """Delete the earlier run set aside for `run`, renamed first (`run.deleting`): a deletion stopped half-way
    leaves no partial `run.replaced` that a later start would put back over the new run."""
    aside, doomed = set_aside_folder(run), run.with_name(run.name + ".deleting")
    if aside.is_dir():
        shutil.rmtree(doomed, ignore_errors=True)
        aside.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _prepare_run(config: FitConfig, started: float) -> tuple[FitConfig, _Run]:
    """Seeds, devices, the resolved recipe, precision, strategy and a fresh (or resumed) run folder."""
    if config.deterministic:  # before anything is built or drawn
        make_deterministic(config.seed)
    configure_cpu_devices(config.cpu_devices)
    device, gpus = describe_devices()
    # A wrong --init-from folder fails now, not after the data has loaded.
    started_from = read_metadata(config.init_from, weights_only=True) if config.init_from else None
    if started_from and config.image_size is None and "image_size" in started_from:
        config = dataclasses.replace(config, image_size=int(started_from["image_size"]))  # continue at its crop size
    if started_from and config.epochs_finetune == 0:  # a re-export: its held-out test draws what the weights learnt
        config = _reexport_ranges(config, started_from)
    config = dataclasses.replace(config.resolve(device), parameter_head=_checked_parameter_head(config, started_from))
    _check_split_seed(config, started_from)
    policy = set_precision(config.mixed_precision, device)
    strategy = create_strategy(config.strategy)
    worker, chief = worker_index(), is_chief()
    logger.info(f"strategy: {type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s); "
          f"worker {worker}; precision policy {policy}; XLA {'on' if config.jit else 'auto'}")
    # Each worker of a multi-worker run keeps its own folder; only the chief's carries the run's name.
    run = Path(config.run_dir) / (config.name if chief else f"{config.name}.worker-{worker}")
    run = Path(os.path.realpath(run)) if run.is_symlink() else run  # a link to a folder elsewhere: that folder is the run
    check_apart(run, Path(config.out) / config.name, "the run folder (--run-dir) and the export (--out)")
    if config.init_from and (config.epochs_finetune or (config.weights is not None and config.epochs_head)):
        # a fine-tune exported over the model it started from would replace it (the bundled one by default)
        check_apart(Path(config.out) / config.name, config.init_from, "the export (--out, --name) and --init-from")
    if chief:  # an --out that cannot take the export fails now, not after the training
        check_replaceable(Path(config.out) / config.name, EXPORT_MARKERS)  # an earlier blurnet export only
        Path(config.out).mkdir(parents=True, exist_ok=True)
    restore_set_aside(run)  # a run set aside by a new one that was stopped before its data and model were ready
    if run.exists() and not config.resume:
        if any(run.iterdir()) and not (run / RUN_MARKER).is_file():
            raise ValueError(f"{str(run)!r} holds files but is not a run folder (no {RUN_MARKER}); a new run would "
                             "delete them: choose another --name or --run-dir.")
        run.rename(set_aside_folder(run))  # deleted by `fit` once the new run's data and model are built
    elif config.resume and not run.exists():
        logger.warning(f"--resume: no run folder {str(run)!r}; starting a new run")
    run.mkdir(parents=True, exist_ok=True)
    return config, _Run(device, gpus, started_from, policy, strategy, worker, chief, run, run_start_time(run, started))


def pipeline_config(config: FitConfig) -> PipelineConfig:
    """What the generated samples are made of: crop and batch size, seed, sharpness filter, PSF families, blur
    ranges and augmentation (the palette share)."""
    return PipelineConfig(image_size=config.image_size, batch_size=config.batch_size, seed=config.seed,
                          min_sharpness=config.min_sharpness, families=PsfFamilies.named(config.psf_families),
                          ranges=config.ranges(), augment=config.augment())


def _build(config: FitConfig, run: _Run) -> tuple[PipelineConfig, Data, keras.Model, tuple]:
    """The pipeline, the splits' batch makers, the model (built in the strategy's scope) and the training set (as
    `train(start)`, see `fit_stage`) with the validation set."""
    pipeline = pipeline_config(config)
    data = load_data(config, pipeline, run.worker)
    parts = estimate_parts(config, run.device)
    logger.info(f"recipe: {run.device}; estimated duration about {sum(parts.values()) / 60:.0f} min (training "
          f"{(parts['build'] + parts['train'] + parts['validate']) / 60:.1f}, held-out test {parts['held_out'] / 60:.1f}, "
          f"export {parts['export'] / 60:.1f})")
    strategy = run.strategy
    with strategy.scope():
        model = create_model(config.backbone, config.weights, highpass=config.highpass, spectrum=config.spectrum,
                             parameter_head=config.parameter_head)
        if config.init_from:
            load_export_weights(model, config.init_from)
            logger.info(f"weights: all taken from the export {config.init_from}")
    check_run_architecture(run.folder, config, model)  # before any training: a refused resume loses nothing
    prepare_for_multiworker(model, strategy)
    # BatchNormalization layers that train (from scratch or an export, unless frozen) do so over the global batch.
    if not config.freeze_batchnorm and strategy.num_replicas_in_sync > 1:
        logger.info(f"BatchNormalization synchronized across replicas in {synchronize_batchnorm(model)} layers")
    val_ds = data.val.dataset(num_batches=-(-config.val_images // config.batch_size), with_params=config.parameter_head)
    if config.parameter_head:
        val_ds = with_parameter_targets(val_ds)

    def train_from(start: int):
        """The endless training set from batch `start` (`fit_stage` starts each stage where the last one ended)."""
        train_ds = data.train.dataset(start=start, with_params=config.parameter_head)
        return shard_off(with_parameter_targets(train_ds) if config.parameter_head else train_ds)

    return pipeline, data, model, (train_from, shard_off(val_ds))


def _train_stages(model, config: FitConfig, data_sets, run: _Run) -> None:
    """Stage 1 (unless done already or skipped), stage 2, then the best checkpoint's weights; with
    `freeze_classifier`, the parameter head alone instead of both stages."""
    folder = run.folder
    head_epochs = config.epochs_head if config.weights is not None else 0
    if config.freeze_classifier:
        if config.epochs_finetune:
            train_parameter_head(model, config, data_sets, folder, run.strategy)
    elif head_epochs:
        if config.resume and (folder / "head.weights.h5").exists():
            model.load_weights(folder / "head.weights.h5")
            logger.info("stage 1 (head): already done, resumed from its weights")
        else:
            train_head(model, config, data_sets, folder, run.strategy)
    else:
        logger.info(f"stage 1 (head): skipped, the backbone starts from {'the export' if config.init_from else 'random weights'}")
    if config.epochs_finetune and not config.freeze_classifier:
        # Stage 2's epochs are numbered after stage 1's: the shared training log counts epochs across both stages.
        train_finetune(model, config, data_sets, folder, head_epochs, run.strategy)
    if (folder / "best.weights.h5").exists():
        # The model's weights only: no more training follows, and a checkpoint from stage 1 holds
        # fewer optimizer variables than stage 2's optimizer (Keras would warn that it skips them).
        optimizer = getattr(model, "optimizer", None)
        model.load_weights(folder / "best.weights.h5", objects_to_skip=[optimizer] if optimizer is not None else None)


#: The `blurnet.json` keys that say what a model's weights learnt from; under `classifier_data`, what the classifier
#: of a `--freeze-classifier` model learnt from (its top-level keys are what the parameter head saw).
TRAINING_DATA_KEYS = ("psf_families", "camera", "generated_scenes", "training_data")


def _metadata(config: FitConfig, run: _Run, pipeline: PipelineConfig, data: Data, held_out: dict, started: float) -> dict:
    """`blurnet.json`: classes, recipe, data, held-out metrics and where and how long it ran."""
    labelled = isinstance(data.train, LabelledBatchMaker)
    metadata = {
        "classes": list(CLASS_NAMES), "blur_ranges": pipeline.ranges.to_dict(),
        "image_size": config.image_size, "backbone": config.backbone,
        "weights": (weights_origin(run.started_from) if run.started_from is not None
                    else "imagenet" if config.weights == "imagenet" else "none" if config.weights is None
                    else f"file:{config.weights}"),
        "init_from": config.init_from,
        "highpass": config.highpass, "spectrum": config.spectrum, "parameter_head": config.parameter_head,
        "training_data": data.description,
        # a labelled folder's images are used as they are: no PSF families, no camera steps
        "psf_families": None if labelled else pipeline.families.to_dict(),
        "camera": None if labelled else pipeline.camera_record(), "generated_scenes": config.generated_scenes,
        # a labelled folder's held-out crops are cut from few files: how many of each class
        "held_out": held_out if data.held_out_files is None else {**held_out, "n_files": data.held_out_files},
        "fit_config": dataclasses.asdict(config),
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "hardware": f"{os.cpu_count()} CPU cores, {len(run.gpus)} GPU(s) {[g.name for g in run.gpus]}",
        "device": run.device,
        "strategy": {"name": type(run.strategy).__name__, "replicas": run.strategy.num_replicas_in_sync},
        "precision_policy": run.policy, "wall_time_s": round(time.time() - started, 1),
    }
    if config.resume:  # this process only resumed: also the time since the run first started
        metadata["wall_time_since_first_start_s"] = round(time.time() - run.first_started, 1)
    if run.started_from is not None:  # the history behind the starting weights
        metadata["started_from"] = {"folder": str(config.init_from), **run.started_from}
        source_data = {key: run.started_from.get(key, 0 if key == "generated_scenes" else None) for key in TRAINING_DATA_KEYS}
        if not config.epochs_finetune:  # a re-export (stage 1 never runs from an export): the weights learnt what the source saw
            metadata.update(source_data)
            metadata["held_out_data"] = data.description  # what the held-out figures here were measured on
        if config.freeze_classifier:  # the classifier kept the source's weights: what they learnt from, beside the head's
            metadata["classifier_data"] = run.started_from.get("classifier_data", source_data)
        elif not config.epochs_finetune and "classifier_data" in run.started_from:  # a re-export keeps it
            metadata["classifier_data"] = run.started_from["classifier_data"]
    return metadata


def _export(model, config: FitConfig, run: Path, metadata: dict, started: float) -> Path:
    """The export folder (with the training log), then the final weights in the run folder."""
    log = run / "training_log.csv"
    if not log.exists() and config.init_from and not config.epochs_finetune:  # a re-export keeps its curves
        log = Path(config.init_from) / "training_log.csv"
    logger.info(f"export: {Path(config.out) / config.name} (SavedModel averaging {config.test_time_views} view(s))")
    export_started = time.time()
    target = export_model(model, Path(config.out) / config.name, metadata, extra_files=[log] if log.exists() else [],
                          views=config.test_time_views, tile=config.image_size)
    with atomic_file(run / "final.weights.h5") as tmp:
        model.save_weights(tmp)
    logger.info(f"exported {target} in {(time.time() - started) / 60:.1f} min (export {time.time() - export_started:.0f} s)")
    return target


def fit(config: FitConfig) -> Path | None:
    """Train per `config` (fields left None come from the device's recipe) and export.

    Returns the export folder (None on non-chief workers of a multi-worker run,
    which save their final weights in their run folder instead).
    """
    started = time.time()
    config, run = _prepare_run(config, started)
    try:
        pipeline, data, model, data_sets = _build(config, run)
    except BaseException:  # the data or the model could not be made (or Ctrl-C): the earlier run stays
        restore_set_aside(run.folder)
        raise
    discard_set_aside(run.folder)
    _train_stages(model, config, data_sets, run)
    held_out = evaluate_held_out(model, data.test, config)
    if not run.chief:  # every worker evaluates (no collectives); only the chief exports
        with atomic_file(run.folder / "final.weights.h5") as tmp:
            model.save_weights(tmp)
        logger.info(f"worker {run.worker}: final weights in {run.folder / 'final.weights.h5'}; the chief exports")
        return None
    return _export(model, config, run.folder, _metadata(config, run, pipeline, data, held_out, started), started)
