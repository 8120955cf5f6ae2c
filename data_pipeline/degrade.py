"""The blur model `B = I * K + N`, and sampling of a class and its parameters."""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from data_pipeline.classes import CLASS_NAMES, BlurRanges, check_label, class_index
from data_pipeline.psf import (
    SHAKE_MAX_ISOTROPY,
    SHAKE_MOTION_MIN_SPREAD,
    SHAKE_SHARP_MAX_SPREAD,
    defocus_psf,
    disk_equivalent_radius,
    gaussian_psf,
    identity_psf,
    lens_psf,
    motion_psf,
    motion_spread,
    psf_isotropy,
    shake_psf,
    soften,
)

#: Sigma range (px) of the Gaussian a softened motion PSF is convolved with (`PsfFamilies.motion_softness`).
MOTION_SOFTNESS_SIGMA = (0.5, 1.0)

@dataclasses.dataclass(frozen=True)
class PsfFamilies:
    """How often each class draws its realistic PSF family instead of the classic one.

    `shake_fraction`: motion samples blurred by a camera-shake trajectory
    (`psf.shake_psf`) instead of a straight streak. Half and half by default:
    straight streaks are what panning and vehicles look like,
    trajectories what a hand-held camera does, and neither should crowd the
    other out. `lens_fraction`: defocus samples through a real-lens aperture
    (`psf.lens_psf`: polygonal iris, brighter rim or centre, soft edge) instead
    of the uniform disk. `sharp_shake_fraction`: sharp samples given a
    camera shake too small to see (energy spread <= 1.5 px), since a
    hand-held sharp photograph is never perfectly still. `motion_softness`:
    motion samples (streak or trajectory alike) whose PSF is convolved with a
    Gaussian of sigma `MOTION_SOFTNESS_SIGMA` (0.5 to 1.0 px), the blur the
    optics add to the path (`psf.soften`): a real shake's trail is never one
    pixel wide, and a model that has only seen pin-sharp trails calls a streak
    softened by 1 px `gaussian` (`benchmarks/recorded_shake.py`; at 0.7 px it
    still reads motion). Half of them by default. `PsfFamilies.classic()`
    draws only the classic shapes.
    """

    shake_fraction: float = 0.5
    lens_fraction: float = 0.5
    sharp_shake_fraction: float = 0.3
    motion_softness: float = 0.5

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{field.name} must be in [0, 1], got {value!r}.")

    @classmethod
    def classic(cls) -> "PsfFamilies":
        """Only the classic shapes: straight streaks, uniform disks, perfectly sharp."""
        return cls(0.0, 0.0, 0.0, 0.0)

    @classmethod
    def named(cls, name: str) -> "PsfFamilies":
        """The preset `name` of `PSF_FAMILY_PRESETS`: "realistic" (the default mix) or "classic"."""
        if name not in PSF_FAMILY_PRESETS:
            raise ValueError(f"PSF families must be one of {sorted(PSF_FAMILY_PRESETS)}, got {name!r}.")
        return PSF_FAMILY_PRESETS[name]

    def to_dict(self) -> dict:
        """JSON-friendly dict, as recorded in `blurnet.json`."""
        return dataclasses.asdict(self)


#: The PSF mixes `blurnet fit --psf-families` offers: the realistic default, and the classic shapes alone
#: (e.g. to fine-tune a classifier for the camera steps without changing the blur it knows).
PSF_FAMILY_PRESETS = {"realistic": PsfFamilies(), "classic": PsfFamilies.classic()}


#: The PSF families (`BlurParams.family`) each class may be drawn with: "" is the class's classic shape.
_FAMILIES_OF_CLASS = {"sharp": ("", "shake"), "gaussian": ("",), "motion": ("", "shake"), "defocus": ("", "lens")}


@dataclasses.dataclass(frozen=True)
class BlurParams:
    """One sampled degradation.

    `strength` is the class's main parameter in pixels (Gaussian sigma, motion
    length, defocus radius; 0 for sharp), `angle` the motion direction in
    degrees (0 for other classes) and `noise_sigma` the additive noise on the
    0..255 scale. For a camera-shake trajectory the length is its energy
    spread and the angle its principal axis (`psf.motion_spread`: the length
    and angle of the straight streak with the same second moments), what the
    photograph shows and the parameter head learns; `extent` is the size the
    trajectory was drawn at. Likewise for a real-lens aperture the radius is
    that of the uniform disk with the same second moments
    (`psf.disk_equivalent_radius`) and `extent` the circumradius it was
    drawn at; given only a strength, `make_psf` draws the shape at that
    size. `family` names the PSF family: "" for the class's classic one
    (identity, Gaussian, straight streak, uniform disk), "shake" (motion, or
    sharp with a shake too small to see) or "lens" (defocus); any other, or
    another class's, is a `ValueError`, as is a label outside 0..3.
    `psf_seed` seeds the random shape of a "shake" or "lens" PSF, so
    `make_psf` rebuilds the same kernel. `softness`: sigma in px of the
    Gaussian the PSF is then convolved with (`psf.soften`; 0: none), drawn
    for motion samples only (`PsfFamilies.motion_softness`); the strength and
    angle stay those of the path.
    """

    label: int
    strength: float = 0.0
    angle: float = 0.0
    noise_sigma: float = 0.0
    family: str = ""
    psf_seed: int = 0
    extent: float = 0.0
    softness: float = 0.0

    def __post_init__(self):
        name = CLASS_NAMES[check_label(self.label)]
        if self.family not in _FAMILIES_OF_CLASS[name]:
            raise ValueError(f"a {name} sample's PSF family must be one of {list(_FAMILIES_OF_CLASS[name])}, "
                             f"got {self.family!r}.")

    @property
    def class_name(self) -> str:
        """Name of the class, one of `CLASS_NAMES`."""
        return CLASS_NAMES[self.label]

    def as_array(self) -> np.ndarray:
        """`[strength, angle, noise_sigma]` as float32, the layout the datasets carry."""
        return np.array([self.strength, self.angle, self.noise_sigma], np.float32)


def lens_shape(rng: np.random.Generator) -> dict:
    """Random real-lens aperture settings for `psf.lens_psf`: each variant on about half of the draws.

    Iris: round or a polygon of 5 to 9 blades at a random rotation; brightness:
    uniform, brighter rim or brighter centre; edge: sharp or softened by a
    Gaussian of sigma up to 0.7 px.
    """
    blades = int(rng.integers(5, 10)) if rng.random() < 0.5 else 0
    rotation = float(rng.uniform(0.0, 360.0))
    rim = float(rng.uniform(-0.8, 0.8)) if rng.random() < 0.6 else 0.0
    softness = float(rng.uniform(0.2, 0.7)) if rng.random() < 0.5 else 0.0
    return {"blades": blades, "rotation": rotation, "rim": rim, "softness": softness}


def make_psf(params: BlurParams) -> np.ndarray:
    """The PSF described by `params`."""
    psf = _unsoftened_psf(params)
    return soften(psf, params.softness) if params.softness > 0 else psf


def _unsoftened_psf(params: BlurParams) -> np.ndarray:
    name = params.class_name
    # `extent` is the size a shake or lens PSF was drawn at (`sample_blur`); params made by hand may give only the
    # strength, which then stands for it
    if params.family == "shake":
        return _shake_psf(name, params.extent or params.strength, params.psf_seed)
    if params.family == "lens":
        return lens_psf(params.extent or params.strength, **lens_shape(np.random.default_rng(params.psf_seed)))
    if name == "sharp":
        return identity_psf()
    if name == "gaussian":
        return gaussian_psf(params.strength)
    if name == "motion":
        return motion_psf(params.strength, params.angle)
    return defocus_psf(params.strength)


#: The extents (px) a sharp sample's shake is drawn at (`_shake_psf`).
_SHARP_SHAKE_EXTENT = (0.5, 1.5)


def _shake_psf(class_name: str, extent: float, seed: int) -> np.ndarray:
    """The shake PSF of `seed`; a sharp sample's extent (0.5 to 1.5 px) is drawn from the seed too."""
    rng = np.random.default_rng(seed)
    if class_name == "sharp":
        extent = float(rng.uniform(*_SHARP_SHAKE_EXTENT))
    elif not extent > 0:  # a motion sample's path must have a length
        raise ValueError(f"a motion shake needs an extent (or strength) > 0 px, got {extent!r}.")
    return shake_psf(extent, rng)


def sample_blur(rng: np.random.Generator, label: int | str, ranges: BlurRanges = BlurRanges(),
                families: PsfFamilies = PsfFamilies()) -> tuple[BlurParams, np.ndarray]:
    """Draw a class-`label` degradation and its PSF: `(params, psf)`, as `_sample_path` draws them, then for a
    motion sample, with probability `families.motion_softness`, softened by a Gaussian of sigma drawn from
    `MOTION_SOFTNESS_SIGMA` (`BlurParams.softness`). With `motion_softness` 0 nothing more is drawn: the stream of
    samples is that of the families without it."""
    params, psf = _sample_path(rng, label, ranges, families)
    if params.class_name == "motion" and families.motion_softness > 0 and rng.random() < families.motion_softness:
        params = dataclasses.replace(params, softness=float(rng.uniform(*MOTION_SOFTNESS_SIGMA)))
        psf = soften(psf, params.softness)
    return params, psf


def _sample_path(rng: np.random.Generator, label: int | str, ranges: BlurRanges, families: PsfFamilies) -> tuple[BlurParams, np.ndarray]:
    """A class-`label` degradation and its PSF before any softening: `(params, psf)`.

    Classic shapes as `sample_params`; with the probabilities of `families`,
    a camera-shake trajectory or a real-lens aperture instead. Where `motion`
    starts for a trajectory is set by how far its energy spreads
    (`psf.motion_spread`), not by its path length: a motion trajectory is
    redrawn until it spreads at least `SHAKE_MOTION_MIN_SPREAD` (4 px, close
    to the 5 px shortest streak) and along one direction more than across it
    (`psf_isotropy` at most `SHAKE_MAX_ISOTROPY`, 0.5: a loop is a blob, not a
    streak), and a sharp sample's shake at most
    `SHAKE_SHARP_MAX_SPREAD` (1.5 px, well under the 3.5 px of the mildest
    Gaussian); nothing in between is drawn. A trajectory is drawn at an
    extent from `ranges.motion_length`; its strength is its energy spread and
    its angle the principal axis of its energy (any direction:
    `ranges.motion_angle` applies to streaks), so a trajectory that dwells
    reads as the shorter streak it looks like. A real-lens aperture is drawn at a
    circumradius from `ranges.defocus_radius` (its `extent`); its strength is
    the radius of the uniform disk with the same second moments
    (`psf.disk_equivalent_radius`), so a pentagonal iris or a brighter centre
    reads as the smaller disk it looks like. A trajectory that spreads less
    than 4 px (or is too round) is drawn again, up to 10 times, then the sample
    falls back to a streak; that is rare: with `shake_fraction` 0.5, 49 % of
    4,000 motion samples were trajectories (seed 0). A trajectory's strength is
    therefore not held to `ranges.motion_length`: 4.1 to 27.1 px in those
    samples (1st to 99th percentile 4.4 to 23.8), a lens's 1.6 to 7.8 px.
    """
    params = sample_params(rng, label, ranges)
    name = params.class_name
    if name == "motion" and rng.random() < families.shake_fraction:
        for _ in range(10):
            seed = int(rng.integers(2**31))
            psf = _shake_psf(name, params.strength, seed)
            spread, angle = motion_spread(psf)
            if spread >= SHAKE_MOTION_MIN_SPREAD and psf_isotropy(psf) <= SHAKE_MAX_ISOTROPY:
                return dataclasses.replace(params, strength=spread, angle=angle, family="shake", psf_seed=seed,
                                           extent=params.strength), psf
    elif name == "defocus" and rng.random() < families.lens_fraction:
        seed = int(rng.integers(2**31))
        psf = lens_psf(params.strength, **lens_shape(np.random.default_rng(seed)))
        return dataclasses.replace(params, strength=disk_equivalent_radius(psf), family="lens", psf_seed=seed,
                                   extent=params.strength), psf
    elif name == "sharp" and rng.random() < families.sharp_shake_fraction:
        for _ in range(5):
            seed = int(rng.integers(2**31))
            psf = _shake_psf(name, 0.0, seed)
            if motion_spread(psf)[0] <= SHAKE_SHARP_MAX_SPREAD:
                return dataclasses.replace(params, family="shake", psf_seed=seed), psf
    return params, make_psf(params)


def sample_params(rng: np.random.Generator, label: int | str, ranges: BlurRanges = BlurRanges()) -> BlurParams:
    """Draw parameters of class `label` uniformly from `ranges`."""
    label = class_index(label) if isinstance(label, str) else check_label(label)
    noise = float(rng.uniform(*ranges.noise_sigma))
    name = CLASS_NAMES[label]
    if name == "sharp":
        return BlurParams(label, 0.0, 0.0, noise)
    strength = float(rng.uniform(*ranges.strength_range(name)))
    angle = float(rng.uniform(*ranges.motion_angle)) if name == "motion" else 0.0
    return BlurParams(label, strength, angle, noise)


def _separable(kernel: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """`(row, column)` 1-D kernels whose outer product is `kernel` (to float32 precision), else `(None, None)`."""
    r, c = kernel.shape[0] // 2, kernel.shape[1] // 2
    pivot = float(kernel[r, c])
    if pivot <= 0:
        return None, None
    column, row = kernel[:, c].astype(np.float64), kernel[r, :].astype(np.float64) / pivot
    if np.abs(np.outer(column, row) - kernel).max() > 1e-7:
        return None, None
    return row.astype(np.float32), column.astype(np.float32)


def convolve(image: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """`image * psf` (true convolution) in float32 with reflected borders.

    `image` is HxW or HxWxC; the result has the same shape.
    """
    image = np.asarray(image, np.float32)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be HxW or HxWxC, got shape {image.shape!r}.")
    psf = np.asarray(psf, np.float32)
    if psf.ndim != 2 or psf.shape[0] % 2 == 0 or psf.shape[1] % 2 == 0:
        raise ValueError(f"psf must be a 2-D array of odd size, got shape {psf.shape!r}.")
    if psf.shape == (1, 1):
        return image * psf[0, 0]
    # filter2D correlates; flipping the kernel makes it a convolution.
    flipped = psf[::-1, ::-1]
    row, column = _separable(flipped)
    if row is not None:  # a rank-1 PSF (Gaussian, horizontal or vertical streak): two 1-D passes
        out = cv2.sepFilter2D(image, cv2.CV_32F, row, column, borderType=cv2.BORDER_REFLECT)
    else:
        out = cv2.filter2D(image, cv2.CV_32F, flipped.copy(), borderType=cv2.BORDER_REFLECT)
    return out.reshape(image.shape)


def depth_defocus(image: np.ndarray, start: float, end: float, angle: float, margin: int = 0) -> np.ndarray:
    """Defocus that changes across `image` as a slanted scene's depth does (a ground plane, a wall seen at an angle).

    The uniform-disk radius runs linearly from `start` px at one edge to `end` px at the opposite one, along the
    direction `angle` (degrees, counter-clockwise on screen, 0 = left to right), so the image's middle has their
    mean; with a `margin`, the edges are those of the image less `margin` px on each side (the part to be kept
    once the margin is cropped), and the radius holds its end values beyond them. `image` is blurred by
    `psf.defocus_psf` at radii 0.25 px apart and each pixel blends the two nearest, a layered approximation of a
    depth-varying PSF; `start == end` is `convolve` with one disk. Radii >= 0.5 px.
    """
    for name, value in (("start", start), ("end", end)):
        if not (math.isfinite(value) and value >= 0.5):
            raise ValueError(f"{name} radius must be a finite number >= 0.5 px, got {value!r}.")
    if not math.isfinite(angle):
        raise ValueError(f"angle must be a finite number of degrees, got {angle!r}.")
    image = np.asarray(image, np.float32)
    h, w = image.shape[:2]
    if not (0 <= margin and 2 * margin < min(h, w)):
        raise ValueError(f"margin must be >= 0 and leave part of the {h}x{w} image, got {margin!r}.")
    a = math.radians(angle)
    # The kept part's length along the ramp, so that its corners (or edges) reach `start` and `end`.
    along = abs(math.cos(a)) * (w - 1 - 2 * margin) + abs(math.sin(a)) * (h - 1 - 2 * margin)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    t = ((xx - (w - 1) / 2) * math.cos(a) - (yy - (h - 1) / 2) * math.sin(a)) / max(along, 1.0) + 0.5
    radius = start + np.clip(t, 0.0, 1.0) * (end - start)
    low, step = min(start, end), 0.25
    layers = [convolve(image, defocus_psf(low + k * step)) for k in range(int(math.ceil((max(start, end) - low) / step)) + 1)]
    if len(layers) == 1:
        return layers[0]
    position = np.clip((radius - low) / step, 0.0, len(layers) - 1.0)
    below = np.minimum(position.astype(np.int64), len(layers) - 2)
    frac = position - below
    out = np.zeros_like(image)
    for k, layer in enumerate(layers):  # each pixel blends its two nearest layers
        weight = np.where(below == k, 1.0 - frac, 0.0) + np.where(below == k - 1, frac, 0.0)
        out += (weight[..., None] if image.ndim == 3 else weight).astype(np.float32) * layer
    return out


def check_noise_sigma(sigma: float) -> float:
    """`sigma` as a float; `ValueError` echoing it unless it is a finite number >= 0 (0..255 scale)."""
    if not (math.isfinite(float(sigma)) and float(sigma) >= 0):
        raise ValueError(f"noise sigma must be a finite number >= 0, got {sigma!r}.")
    return float(sigma)


def add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator, clip: bool = True) -> np.ndarray:
    """Add zero-mean Gaussian noise of standard deviation `sigma` (0..255 scale)."""
    sigma = check_noise_sigma(sigma)
    out = np.asarray(image, np.float32)
    if sigma > 0:
        out = out + sigma * rng.standard_normal(out.shape, dtype=np.float32)
    return np.clip(out, 0.0, 255.0) if clip else out


def degrade(image: np.ndarray, params: BlurParams, rng: np.random.Generator) -> np.ndarray:
    """`B = I * K + N`: blur `image` (0..255) with the PSF of `params`, add noise, clip to 0..255."""
    return add_noise(convolve(image, make_psf(params)), params.noise_sigma, rng)


def psf_half_size(ranges: BlurRanges, families: PsfFamilies = PsfFamilies()) -> int:
    """Largest PSF half-width (pixels) that `ranges` and `families` can produce: the crop margin to use.

    A camera-shake PSF is centred on its centroid, which may sit near one end
    of its path, so it can reach its whole extent (plus a pixel) from the middle.
    A softened motion PSF (`PsfFamilies.motion_softness`) is wider by `psf.soften`'s padding.
    """
    soft = 2 * math.ceil(3.0 * MOTION_SOFTNESS_SIGMA[1]) if families.motion_softness > 0 else 0  # `psf.soften`'s padding
    sizes = [
        2 * (math.ceil(ranges.motion_length[1]) + 1) + 1 + soft if families.shake_fraction > 0 else 1,
        2 * (math.ceil(_SHARP_SHAKE_EXTENT[1]) + 1) + 1 if families.sharp_shake_fraction > 0 else 1,
        motion_psf(ranges.motion_length[1], 45.0).shape[0] + soft,
        lens_psf(ranges.defocus_radius[1], softness=0.7).shape[0] if families.lens_fraction > 0 else 1,
        gaussian_psf(ranges.gaussian_sigma[1]).shape[0],
        defocus_psf(ranges.defocus_radius[1]).shape[0],
    ]
    return max(sizes) // 2
