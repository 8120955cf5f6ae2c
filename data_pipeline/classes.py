"""The four blur classes and the parameter ranges each is sampled from."""
from __future__ import annotations

import dataclasses
import math
import operator

import numpy as np

CLASS_NAMES = ("sharp", "gaussian", "motion", "defocus")
NUM_CLASSES = len(CLASS_NAMES)

#: Smallest image side, in pixels, that blurnet trains on, reads or classifies: the
#: spectral branch and the sharpness measure look at 32 x 32 windows.
MIN_IMAGE_SIDE = 32

#: Name of the blur-strength parameter of each class (None for sharp).
STRENGTH_PARAMETER = {
    "sharp": None,
    "gaussian": "sigma",
    "motion": "length",
    "defocus": "radius",
}


def balanced_labels(rng, classes, batch_size: int, index: int):
    """The labels of batch `index`: `classes` taken in turn from position `index * batch_size`, shuffled by `rng`.

    Consecutive batches cycle through the classes, so any run of batches is balanced over them. Returns an int32
    array of `batch_size` labels.
    """
    classes = np.asarray(classes, np.int64)
    if classes.size == 0:
        raise ValueError("balanced_labels needs at least one class, got none.")
    return rng.permutation(classes[(np.arange(batch_size) + int(index) * batch_size) % classes.size]).astype(np.int32)


def check_label(label) -> int:
    """`label` as an int; `ValueError` echoing it unless it is a class index (an integer, NumPy's too), 0..NUM_CLASSES - 1."""
    try:
        index = operator.index(label)
    except TypeError:
        index = -1
    if isinstance(label, bool) or not 0 <= index < NUM_CLASSES:
        raise ValueError(f"label must be an integer in 0..{NUM_CLASSES - 1}, got {label!r}.")
    return index


def class_index(name: str) -> int:
    """Index of a class name in `CLASS_NAMES`; `ValueError` listing the allowed names."""
    if name not in CLASS_NAMES:
        raise ValueError(f"Unknown class name {name!r}; allowed names are {', '.join(CLASS_NAMES)}.")
    return CLASS_NAMES.index(name)


#: The lowest value each range may start at. The blur sizes' floors are round values at which the PSF leaves at
#: most 0.62 of its energy on the centre pixel (Gaussian sigma 0.5: 0.619; a 2 px streak at any angle: <= 0.51;
#: a disk of radius 1: 0.315), see `BlurRanges`.
RANGE_FLOORS = {"gaussian_sigma": 0.5, "motion_length": 2.0, "motion_angle": -360.0, "defocus_radius": 1.0,
                "noise_sigma": 0.0}
_BLUR_SIZES = ("gaussian_sigma", "motion_length", "defocus_radius")


@dataclasses.dataclass(frozen=True)
class BlurRanges:
    """Closed intervals the pipeline samples blur parameters from, in pixels.

    Defaults are the documented training ranges. Users may widen them; `validate` rejects ranges
    that are empty, not finite, or start below `RANGE_FLOORS`: below those a PSF leaves most of
    its energy on the centre pixel (a Gaussian of sigma 0.3 keeps 0.985 of it, a disk of radius
    0.5 or a horizontal streak of 1 px all of it), so a sample labelled blurred would be sharp.
    """

    gaussian_sigma: tuple[float, float] = (1.0, 3.5)
    motion_length: tuple[float, float] = (5.0, 21.0)
    motion_angle: tuple[float, float] = (0.0, 180.0)
    defocus_radius: tuple[float, float] = (2.0, 7.0)
    noise_sigma: tuple[float, float] = (0.0, 2.5)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise `ValueError` (echoing the bad value) for empty, infinite or out-of-domain ranges."""
        for field in dataclasses.fields(self):
            low, high = getattr(self, field.name)
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ValueError(f"{field.name} range {(low, high)!r} must be finite numbers.")
            if not (low <= high):
                raise ValueError(f"{field.name} range {(low, high)!r} is empty: low must be <= high.")
            if low < RANGE_FLOORS[field.name]:
                raise ValueError(
                    f"{field.name} range {(low, high)!r} starts below the minimum {RANGE_FLOORS[field.name]}"
                    + (" (a smaller PSF leaves the image nearly sharp)." if field.name in _BLUR_SIZES else ".")
                )

    def strength_range(self, class_name: str) -> tuple[float, float] | None:
        """The (low, high) range of the strength parameter of a blurred class, None for sharp."""
        return {
            "sharp": None,
            "gaussian": self.gaussian_sigma,
            "motion": self.motion_length,
            "defocus": self.defocus_radius,
        }[CLASS_NAMES[class_index(class_name)]]

    def scaled(self, factor: float) -> "BlurRanges":
        """Ranges with every length multiplied by `factor` (angles and noise unchanged)."""
        return BlurRanges(
            gaussian_sigma=tuple(v * factor for v in self.gaussian_sigma),
            motion_length=tuple(v * factor for v in self.motion_length),
            motion_angle=self.motion_angle,
            defocus_radius=tuple(v * factor for v in self.defocus_radius),
            noise_sigma=self.noise_sigma,
        )

    def to_dict(self) -> dict:
        """JSON-friendly dict (lists instead of tuples)."""
        return {f.name: list(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "BlurRanges":
        """Inverse of `to_dict` (any subset of the fields; the others keep their defaults); `ValueError` for an
        unknown key or a value that is not two numbers, echoing it."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"Unknown blur range keys {sorted(unknown)!r}; expected {sorted(names)!r}.")
        ranges = {}
        for key, value in data.items():
            try:
                if isinstance(value, (str, bytes)):  # "13" would unpack into two digits
                    raise TypeError(value)
                low, high = (float(v) for v in value)
            except (TypeError, ValueError):
                raise ValueError(f"blur_ranges[{key!r}] must be two numbers (low, high), got {value!r}.") from None
            ranges[key] = (low, high)
        return cls(**ranges)
