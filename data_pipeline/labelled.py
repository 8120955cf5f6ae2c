"""Labelled image folders: `DIR/<class>/<file>` with the class names of `data_pipeline.classes`."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from data_pipeline.classes import CLASS_NAMES, MIN_IMAGE_SIDE, balanced_labels
from data_pipeline.sources import IMAGE_EXTENSIONS, ImageReadError, list_image_files, read_image

logger = logging.getLogger(__name__)


def _subfolders(folder: Path) -> list[Path]:
    """The subfolders of `folder` that hold data: hidden ones (`.ipynb_checkpoints`, `.thumbnails`) left out."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def is_labelled_folder(folder: str | os.PathLike) -> bool:
    """True when a subfolder of `folder` (hidden ones left out) is named after a class. The folder is then read as
    labelled, and `list_labelled_files` refuses any other subfolder by name: a stray or misspelt folder beside
    `sharp/` and `motion/` is an error, never a reason to take labelled images for sharp photographs to blur."""
    folder = Path(folder)
    return folder.is_dir() and any(p.name in CLASS_NAMES for p in _subfolders(folder))


def list_labelled_files(folder: str | os.PathLike) -> tuple[list[tuple[Path, int]], list[str]]:
    """`[(path, label)]` of every image under `DIR/<class>/`, and the class names whose folder is empty.

    Raises `FileNotFoundError` for a missing folder and `ValueError` listing the
    allowed names for a subfolder with an unknown name (hidden subfolders are left out).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Labelled folder {str(folder)!r} does not exist or is not a folder.")
    subdirs = _subfolders(folder)
    unknown = [p.name for p in subdirs if p.name not in CLASS_NAMES]
    if unknown:
        raise ValueError(
            f"{str(folder)!r}: unknown class folder(s) {', '.join(repr(u) for u in unknown)}; "
            f"allowed names are {', '.join(CLASS_NAMES)}."
        )
    items, empty = [], []
    for label, name in enumerate(CLASS_NAMES):
        files = list_image_files(folder / name) if (folder / name).is_dir() else []
        if not files:
            empty.append(name)
        items.extend((path, label) for path in files)
    if not items:
        raise FileNotFoundError(
            f"No image in {str(folder)!r}: expected DIR/<class>/<file> with class in {', '.join(CLASS_NAMES)} "
            f"and extension in {', '.join(IMAGE_EXTENSIONS)}."
        )
    return items, empty


def read_labelled(items, min_size: int = MIN_IMAGE_SIDE, skipped: list | None = None):
    """Yield `(image, label, path)` (uint8 RGB, the label, the path as a string) for each `(path, label)` of `items`
    (`list_labelled_files`) that reads as an image at least `min_size` px a side, one at a time; each other one
    appends "unreadable" or "small" to `skipped`."""
    skipped = [] if skipped is None else skipped
    for path, label in items:
        try:
            image = read_image(path)
        except ImageReadError:
            skipped.append("unreadable")
            continue
        if min(image.shape[:2]) < min_size:
            skipped.append("small")
            continue
        yield image, label, str(path)


def warn_skipped(folder, total: int, skipped: list, min_size: int = MIN_IMAGE_SIDE) -> None:
    """One warning counting the files of `folder` that `read_labelled` skipped (`skipped`) among `total`; none if
    it skipped nothing."""
    if skipped:
        logger.warning("skipped %d of %d files in %s: %d unreadable, %d smaller than %d px", len(skipped), total, folder,
                       skipped.count("unreadable"), skipped.count("small"), min_size)


def load_labelled_images(folder: str | os.PathLike, min_size: int = MIN_IMAGE_SIDE) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Read a labelled folder: images (uint8 RGB), labels, and the paths read.

    Unreadable files and images smaller than `min_size` are skipped and reported
    in one warning line. An empty class folder gets a warning too.
    """
    items, empty = list_labelled_files(folder)
    if empty:
        logger.warning("%s: no image for class(es) %s", folder, ", ".join(empty))
    images, labels, paths, skipped = [], [], [], []
    for image, label, path in read_labelled(items, min_size, skipped):
        images.append(image)
        labels.append(label)
        paths.append(path)
    warn_skipped(folder, len(items), skipped, min_size)
    if not images:
        raise FileNotFoundError(f"No readable image of at least {min_size} px in {str(folder)!r}.")
    return images, np.array(labels, np.int32), paths


#: The share of each class's files held out for validation, and again for the test (at least one file each).
HELD_OUT_SHARE = 0.1
#: Tags `split_labelled`'s random stream: `default_rng(seed)` alone is the stream of training batch 0.
_SPLIT_STREAM = 0x5917


def split_labelled(labels, seed: int) -> dict[str, np.ndarray]:
    """Indices of the `test`, `val` and `train` files of a labelled folder, split by file within each class: a
    class with at least 3 files gives `HELD_OUT_SHARE` of them (at least one) to the test and as many to validation,
    a class with fewer gives all of them to training. `ValueError` when no class has 3 files."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    parts: dict[str, list] = {"test": [], "val": [], "train": []}
    for c in range(len(CLASS_NAMES)):
        files = rng.permutation(np.flatnonzero(labels == c))
        held = max(1, int(len(files) * HELD_OUT_SHARE)) if len(files) >= 3 else 0
        parts["test"] += files[:held].tolist()
        parts["val"] += files[held : 2 * held].tolist()
        parts["train"] += files[2 * held :].tolist()
    if not parts["test"]:
        counts = ", ".join(f"{CLASS_NAMES[c]} {int((labels == c).sum())}" for c in range(len(CLASS_NAMES)) if (labels == c).any())
        raise ValueError(f"too few labelled images to split into train, val and test: {len(labels)} ({counts or 'none'}); "
                         f"a class needs at least 3 files.")
    return {split: np.array(sorted(idx), np.int64) for split, idx in parts.items()}


class LabelledBatchMaker:
    """Batches of random `image_size` crops (turned by a random multiple of 90 degrees when `flips`) from labelled
    images, one batch per index.

    Classes are drawn in turn, so batches are balanced over the classes present.
    Images smaller than `image_size` must be filtered out before.
    """

    def __init__(self, images: list[np.ndarray], labels: np.ndarray, image_size: int, batch_size: int, seed: int, stream: int = 0, flips: bool = True):
        small = [i for i, im in enumerate(images) if min(im.shape[:2]) < image_size]
        if small:
            shown = ", ".join(f"#{i} {images[i].shape[0]}x{images[i].shape[1]}" for i in small[:5])
            raise ValueError(f"{len(small)} labelled images are smaller than image_size={image_size}: {shown}"
                             f"{', ...' if len(small) > 5 else ''}.")
        self.images, self.labels = images, np.asarray(labels, np.int32)
        self.by_class = [np.flatnonzero(self.labels == c) for c in range(len(CLASS_NAMES))]
        self.present = [c for c in range(len(CLASS_NAMES)) if len(self.by_class[c])]
        self.image_size, self.batch_size, self.seed, self.stream, self.flips = image_size, batch_size, seed, stream, flips

    def dataset(self, start: int = 0, num_batches: int | None = None, with_params: bool = False):
        """Batches `start, start+1, ...` (`num_batches` of them, or forever) as a `tf.data.Dataset`."""
        from data_pipeline.dataset import batch_dataset

        return batch_dataset(self.make_batch, self.batch_size, self.image_size, start, num_batches, with_params)

    def make_batch(self, index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batch `index`: images float32, labels int32 and NaN params (unknown blur parameters)."""
        index = int(index)
        rng = np.random.default_rng([self.seed, 100 + self.stream, int(index)])
        b, s = self.batch_size, self.image_size
        labels = balanced_labels(rng, self.present, b, index)
        images = np.empty((b, s, s, 3), np.float32)
        for i, label in enumerate(labels):
            image = self.images[int(rng.choice(self.by_class[label]))]
            top = int(rng.integers(0, image.shape[0] - s + 1))
            left = int(rng.integers(0, image.shape[1] - s + 1))
            crop = image[top : top + s, left : left + s]
            if self.flips:
                crop = np.rot90(crop, int(rng.integers(0, 4)))
            images[i] = crop
        return images, labels, np.full((b, 3), np.nan, np.float32)
