"""Running an exported model over evaluation data: the data sources and the loop that yields predictions.

An `EvalSource` is the generated held-out test split of the bundled photographs
(`generated_test_source`) or a labelled folder `DIR/<class>/<file>`
(`labelled_source`). `evaluate` calls the model (and any other exports) on every
chunk, optionally after a JPEG round trip, and keeps the labels, probabilities,
blur strengths, the worst errors and the per-image inputs of the baselines.

Generated test images are crops of the training size and go through the
export's `serve` (its views inside). A labelled folder holds photographs of any
size, and each is answered as `blurnet predict --full` answers it
(`answer_photographs`: auto scale, scale pyramid, every textured tile in the
export's views), so a report on a folder gives the labels users get.
"""
from __future__ import annotations

import dataclasses
import heapq
import logging
import sys
import time

import numpy as np

from blurnet.baselines import handcrafted_features, laplacian_variance
from blurnet.classify import auto_scale, rescale
from data_pipeline.augment import check_jpeg_quality, jpeg_roundtrip
from data_pipeline.classes import CLASS_NAMES, MIN_IMAGE_SIDE, BlurRanges
from data_pipeline.degrade import PsfFamilies

logger = logging.getLogger(__name__)

MAX_MISCLASSIFIED = 16
THUMBNAIL_SIDE = 512


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A copy of `image` shrunk (INTER_AREA) so that its longest side is at most `THUMBNAIL_SIDE`."""
    return rescale(image, max(1.0, max(image.shape[:2]) / THUMBNAIL_SIDE)).copy()


@dataclasses.dataclass
class EvalSource:
    """What to evaluate: an iterator of `(images, labels, params or None, paths or None)` chunks."""

    chunks: object
    total: int
    description: dict
    has_params: bool
    val_maker: object = None
    train_maker: object = None
    photographs: bool = False  # answer each image as `blurnet predict --full` does (`answer_photographs`)


def bundled_split_makers(image_size: int, ranges: BlurRanges, seed: int, batch_size: int, splits=("train", "val", "test"),
                         families: PsfFamilies = PsfFamilies.classic(), split_size: int | None = None,
                         split_seed: int | None = None):
    """Batch makers of `image_size` crops drawn with `seed` over the bundled photographs' splits, and the split itself.

    The photographs are split as a `blurnet fit` at crops of `split_size` with seed `split_seed` split them (default:
    `image_size` and `seed`). To test a model on photographs it never saw, pass the model's own crop size and seed:
    another seed, or another crop size (which leaves out other small photographs before the split), splits them
    differently and can put the model's training photographs in the test split.
    `families`: the PSF families drawn (default: the classic straight streaks and uniform disks, so that held-out
    figures stay comparable between models; `PsfFamilies()` is the training mix).
    """
    from data_pipeline.dataset import BlurBatchMaker, PipelineConfig
    from data_pipeline.sources import bundled_splits

    photos = bundled_splits(split_size or image_size, seed if split_seed is None else split_seed)
    config = PipelineConfig(image_size=image_size, batch_size=batch_size, seed=seed, ranges=ranges, families=families)
    return {s: BlurBatchMaker(photos[s], config, s) for s in splits}, photos


def generated_test_source(image_size: int, ranges: BlurRanges, num_images: int, seed: int, batch_size: int,
                          families: PsfFamilies = PsfFamilies.classic(), split_size: int | None = None,
                          split_seed: int | None = None) -> EvalSource:
    """The default evaluation data: the held-out test split of the bundled photographs (split as
    `bundled_split_makers` says), blurred by the pipeline with the PSF `families` (default: the classic shapes)."""
    makers, splits = bundled_split_makers(image_size, ranges, seed, batch_size, families=families, split_size=split_size,
                                          split_seed=split_seed)
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
        "split": {"crop_size": split_size or image_size, "seed": seed if split_seed is None else split_seed},
        "batch_size": batch_size,
        "n_images": num_batches * batch_size,
        "blur_ranges": ranges.to_dict(),
        "psf_families": families.to_dict(),
    }
    return EvalSource(chunks(), num_batches * batch_size, description, True, makers["val"], makers["train"])


#: Pixels of photographs `labelled_source` hands on at once (uint8 RGB: about 190 MB), so that a folder of
#: large photographs goes through in small chunks (two 24 MP photographs, five of 12 MP) instead of `batch_size`.
PHOTO_CHUNK_PIXELS = 64_000_000


def labelled_source(folder, batch_size: int) -> EvalSource:
    """A labelled folder `DIR/<class>/<file>`, read as it is evaluated: uint8 chunks of consecutive images of one
    shape, at most `batch_size` images and `PHOTO_CHUNK_PIXELS` pixels (at least one image) each, so that only one
    chunk is in memory. Unreadable images and those under 32 px are left out with one warning at the end, as are
    classes with no usable image (the description's counts are those of the images evaluated)."""
    from data_pipeline.labelled import list_labelled_files, read_labelled, warn_skipped

    items, empty = list_labelled_files(folder)
    if empty:
        logger.warning("%s: no image for class(es) %s", folder, ", ".join(empty))
    description = {"source": f"labelled folder {folder}", "n_images": len(items), "classes_present": [],
                   "classes_missing": [], "answered_as": "blurnet predict --full"}

    def chunks():
        pending, labels, paths, used, skipped = [], [], [], set(), []

        def chunk():
            out = np.stack(pending), np.array(labels, np.int32), None, list(paths)
            pending.clear(), labels.clear(), paths.clear()
            return out

        for image, label, path in read_labelled(items, MIN_IMAGE_SIDE, skipped):
            room = max(1, min(batch_size, PHOTO_CHUNK_PIXELS // (image.shape[0] * image.shape[1])))
            if pending and (image.shape != pending[0].shape or len(pending) >= room):
                yield chunk()
            pending.append(image), labels.append(label), paths.append(path)
            used.add(label)
        if pending:
            yield chunk()
        warn_skipped(folder, len(items), skipped, MIN_IMAGE_SIDE)
        if not used:
            raise FileNotFoundError(f"No readable image of at least {MIN_IMAGE_SIDE} px in {str(folder)!r}.")
        missing = [CLASS_NAMES[c] for c in range(len(CLASS_NAMES)) if c not in used]
        if missing:
            logger.warning("no usable image of class(es) %s: left out of per-class metrics", ", ".join(missing))
        description.update(n_images=len(items) - len(skipped), classes_present=[CLASS_NAMES[c] for c in sorted(used)],
                           classes_missing=missing)

    return EvalSource(chunks(), len(items), description, False, photographs=True)


def answer_photographs(model, images) -> np.ndarray:
    """Probabilities `(n, 4)` of whole photographs (0..255, any size), each answered as `blurnet predict --full`
    answers it: auto scale, the scale pyramid, every textured tile in the export's own views
    (`blurnet.classify.classify_levels`). The photographs come decoded in full; for a JPEG whose auto
    scale is 2 or more `predict` decodes it 2 to 8 times smaller instead (`blurnet.inputs.load_for_scale`),
    so there the two differ by the decoders' rounding."""
    from blurnet.classify import classify_levels, pyramid

    tile = int(model.image_size)
    return np.stack([
        classify_levels(model, pyramid(np.clip(np.rint(image), 0, 255).astype(np.uint8), tile))["probabilities"]
        for image in images
    ]).astype(np.float64)


def stream_images(maker, num_images: int):
    """Images, labels, strengths of the first batches of a batch maker."""
    xs, ys, ps = [], [], []
    for i in range(-(-num_images // maker.config.batch_size)):
        x, y, p = maker.make_batch(i)
        xs.append(x), ys.append(y), ps.append(p)
    return np.concatenate(xs)[:num_images], np.concatenate(ys)[:num_images], np.concatenate(ps)[:num_images]


class WorstErrors:
    """The `limit` misclassified images predicted with the highest probability, each kept as a thumbnail whose
    longest side is at most `THUMBNAIL_SIDE` (a panel of `misclassified.png` is 260 px wide: 16 full copies of
    24-megapixel photographs would hold gigabytes)."""

    def __init__(self, limit: int = MAX_MISCLASSIFIED):
        self.limit, self._heap, self._counter = limit, [], 0

    def add(self, images, labels, params, paths, probabilities) -> None:
        """Consider every misclassified image of a chunk."""
        pred = probabilities.argmax(axis=1)
        for i in np.flatnonzero(pred != labels):
            probability = float(probabilities[i, pred[i]])
            if len(self._heap) == self.limit and probability <= self._heap[0][0]:
                continue
            record = {
                "image": thumbnail(np.asarray(images[i])),
                "true": CLASS_NAMES[int(labels[i])],
                "pred": CLASS_NAMES[int(pred[i])],
                "probability": probability,
                "strength": float(params[i, 0]) if params is not None else None,
                "path": paths[i] if paths else None,
            }
            self._counter += 1
            item = (probability, self._counter, record)
            if len(self._heap) < self.limit:
                heapq.heappush(self._heap, item)
            else:
                heapq.heapreplace(self._heap, item)

    def worst_first(self) -> list[dict]:
        """The kept errors, highest probability first."""
        return [r for _, _, r in sorted(self._heap, key=lambda e: -e[0])]


@dataclasses.dataclass
class Evaluation:
    """What `evaluate` gathered: labels, probabilities, strengths, errors, timings and baseline inputs."""

    y_true: np.ndarray
    probabilities: np.ndarray
    strengths: np.ndarray | None
    worst: list[dict]
    seconds: float
    other_probabilities: list[np.ndarray]
    other_seconds: list[float]
    laplacian_scores: list[float]
    laplacian_seconds: float
    features: list[np.ndarray]
    feature_seconds: float
    params: np.ndarray | None = None  # true (strength, angle, noise) per image, when the source knows them
    parameter_estimates: dict = dataclasses.field(default_factory=dict)  # method -> raw (n, 5) estimates

    @property
    def present(self) -> list[int]:
        """The class indices that occur in the labels: what macro-F1 and per-class figures are taken over (a small
        generated test can miss a class)."""
        return sorted(set(np.asarray(self.y_true).tolist()))

    @property
    def y_pred(self) -> np.ndarray:
        """The predicted class of each image."""
        return self.probabilities.argmax(axis=1)


def _timed(fn, *args):
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    import keras

    # A bar on a terminal; in a file or pipe, one line when done (no carriage returns or colour codes).
    verbose = 1 if getattr(sys.stdout, "isatty", lambda: False)() else 2
    return keras.utils.Progbar(total, unit_name="image", stateful_metrics=["accuracy"], verbose=verbose)


def _check_finite(probabilities: np.ndarray, paths, first: int, model: str = "the model") -> None:
    """`ValueError` naming the first image (its path, or its index in the test) `model` answered NaN or infinity
    for: such an answer would be scored as a class (argmax) and written as NaN."""
    bad = np.flatnonzero(~np.isfinite(probabilities).all(axis=1))
    if len(bad):
        where = paths[bad[0]] if paths is not None else f"test image {first + bad[0]}"
        raise ValueError(f"{model} answered {probabilities[bad[0]].tolist()} for {where}: not finite probabilities "
                         f"({len(bad)} of {len(probabilities)} images in this batch); is the export damaged?")


def evaluate(model, source: EvalSource, others=(), baselines: bool = True, jpeg_quality: int | None = None,
             progress: bool = True) -> Evaluation:
    """Run `model` (and each of `others`) over every chunk of `source`; with `baselines`, also compute the
    Laplacian variance and handcrafted features of each image (of a photograph, at the scale `blurnet predict`
    brings it to: `blurnet.classify.auto_scale`). `jpeg_quality` JPEG-compresses each image first."""
    if jpeg_quality is not None:
        check_jpeg_quality(jpeg_quality)  # a bad quality fails before any work
    ys, probs, strengths, other_probs = [], [], [], [[] for _ in others]
    seconds = {"model": 0.0, "lap": 0.0, "feat": 0.0, "others": [0.0 for _ in others]}
    lap_scores, feats, errors = [], [], WorstErrors()
    true_params, estimates = [], {}
    head = getattr(model, "has_parameters", False)
    bar, seen, right = _progress(source.total, progress), 0, 0

    def probabilities(exported, images):  # photographs as `blurnet predict --full` answers them, crops through serve
        return answer_photographs(exported, images) if source.photographs else np.asarray(exported(images), np.float64)

    for images, labels, params, paths in source.chunks:
        if jpeg_quality is not None:
            images = np.stack([jpeg_roundtrip(im, jpeg_quality) for im in images])
        if head and params is not None:  # probabilities and the head's parameters from the same passes and views
            (p, raw), dt = _timed(lambda x: model.answer_tiles(x, model.views), images)
            p = np.asarray(p, np.float64)
        else:
            p, dt = _timed(lambda x: probabilities(model, x), images)
        seconds["model"] += dt
        _check_finite(p, paths, seen)
        for k, other in enumerate(others):
            q, dt = _timed(lambda x: probabilities(other, x), images)
            _check_finite(q, paths, seen, other.name)
            other_probs[k].append(q)
            seconds["others"][k] += dt
        if baselines:
            # a photograph at the scale `blurnet predict` works at, as the model answers it: the baselines learnt on
            # crops of the training ranges at that scale (and a 24-megapixel FFT would take gigabytes)
            seen_as = [rescale(im, auto_scale(*im.shape[:2])) for im in images] if source.photographs else images
            scores, dt = _timed(lambda x: [laplacian_variance(im) for im in x], seen_as)
            lap_scores += scores
            seconds["lap"] += dt
            f, dt = _timed(lambda x: [handcrafted_features(im) for im in x], seen_as)
            feats += f
            seconds["feat"] += dt
        errors.add(images, labels, params, paths, p)
        ys.append(np.asarray(labels)), probs.append(p)
        if params is not None:
            strengths.append(params[:, 0])
            true_params.append(np.asarray(params))
            if head:  # the parameter head, averaged over the model's views as `blurnet predict --full` answers
                estimates.setdefault("blurnet", []).append(raw)
            if baselines:  # the classical estimators
                from blurnet.parameter_baselines import estimate_parameters

                estimates.setdefault("classical", []).append(estimate_parameters(images))
        seen += len(labels)
        right += int((p.argmax(axis=1) == labels).sum())
        if bar is not None:
            bar.update(seen, values=[("accuracy", right / seen)])
    return Evaluation(
        np.concatenate(ys), np.concatenate(probs), np.concatenate(strengths) if strengths else None, errors.worst_first(),
        seconds["model"], [np.concatenate(c) for c in other_probs], seconds["others"],
        lap_scores, seconds["lap"], feats, seconds["feat"],
        np.concatenate(true_params) if true_params else None, {k: np.concatenate(v) for k, v in estimates.items()},
    )
