"""Texture-aware random crops.

A crop too flat to show blur (sky, walls, a black background) teaches the model
nothing: all four classes look the same there. The criterion is the crop's
**mean gradient magnitude** on the 0..255 gray scale (central differences; for a
crop cut with a margin for the blur, that of the square kept inside it),
computed in O(1) per candidate from an integral image. A candidate below
`min_texture` (default 4.0 gray levels per pixel) is rejected and another is
drawn, up to `max_tries` times; then the most textured candidate seen is used.

A textured crop can still be blurred: the defocused background of a photograph
that is sharp as a whole. With `min_sharpness` > 0, a candidate must also keep
the high frequencies of a sharp photograph (`quality.SharpnessMap`: the
high-frequency ratio of the same square, at least `min_side` px around it, by
default the photograph-level threshold 0.003); otherwise it would be labelled
`sharp`, or blurred with a strength below the blur it has. When every try
fails, the most textured candidate is used, as without it. The map is made
with the cropper; `sharpness_map.whole()` is the photograph's own ratio.
`benchmarks/pipeline.py` prints the rejection rates on the bundled photographs.
"""
from __future__ import annotations

import numpy as np
import cv2

from data_pipeline.quality import SharpnessMap

DEFAULT_MIN_TEXTURE = 4.0
DEFAULT_MAX_TRIES = 20


class TexturedCropper:
    """Draws square crops of one photograph, preferring textured regions.

    `rejected` and `drawn` count candidates, so callers can report the
    rejection rate; `soft` counts those rejected as blurred only.
    """

    def __init__(self, image: np.ndarray, min_texture: float = DEFAULT_MIN_TEXTURE, max_tries: int = DEFAULT_MAX_TRIES,
                 min_sharpness: float = 0.0):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be HxWx3, got shape {image.shape!r}.")
        if max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {max_tries!r}.")
        self.image = image
        self.min_texture = float(min_texture)
        self.max_tries = int(max_tries)
        self.integral = cv2.integral(gradient_magnitude(image), sdepth=cv2.CV_64F)
        self.min_sharpness = float(min_sharpness)
        # the photograph's high-frequency ratios; also what tells a photograph blurred as a whole
        self.sharpness_map = SharpnessMap(image) if self.min_sharpness else None
        self.rejected = 0
        self.soft = 0
        self.drawn = 0

    def texture(self, top: int, left: int, size: int) -> float:
        """Mean gradient magnitude of the crop at (top, left) with side `size`."""
        s = self.integral
        total = s[top + size, left + size] - s[top, left + size] - s[top + size, left] + s[top, left]
        return float(total) / (size * size)

    def sharpness(self, top: int, left: int, size: int) -> float:
        """The high-frequency ratio (`quality.SharpnessMap`) of the square at (top, left) with side `size`, widened
        about its centre to the map's `min_side` when smaller (and kept inside the photograph); in a photograph
        narrower than that, the square is moved onto the map's grid so that it holds a window."""
        sharpness = self.sharpness_map or SharpnessMap(self.image)
        self.sharpness_map = sharpness
        h, w = self.image.shape[:2]
        side = min(max(size, sharpness.min_side), h, w)
        top = min(max(top - (side - size) // 2, 0), h - side)
        left = min(max(left - (side - size) // 2, 0), w - side)
        if side < sharpness.min_side:  # the photograph is narrower than min_side
            top, left = (min(v // sharpness.stride, (n - 32) // sharpness.stride) * sharpness.stride for v, n in ((top, h), (left, w)))
        return sharpness.ratio(top, left, side)

    def has_texture(self, size: int, core: int | None = None) -> bool:
        """Whether any crop of side `size` on a half-overlapping grid passes `min_texture`, judged on its central
        `core` square as `crop` judges it (default: all of it)."""
        h, w = self.image.shape[:2]
        if size > h or size > w:
            return False
        core, inset = _core_and_inset(size, core)
        step = max(1, core // 2)
        tops = sorted(set(range(0, h - size + 1, step)) | {h - size})
        lefts = sorted(set(range(0, w - size + 1, step)) | {w - size})
        return any(self.texture(t + inset, l + inset, core) >= self.min_texture for t in tops for l in lefts)

    def crop(self, rng: np.random.Generator, size: int, core: int | None = None) -> np.ndarray:
        """A `size` x `size` crop (a view into the photograph), its texture judged on its central `core` x `core`
        square (default: all of it): a crop with a margin around the sample is judged on the sample."""
        h, w = self.image.shape[:2]
        if size > h or size > w:
            raise ValueError(f"crop size {size} is larger than the photograph ({h}x{w}).")
        core, inset = _core_and_inset(size, core)
        best, best_texture = (0, 0), -1.0
        for _ in range(self.max_tries):
            top = int(rng.integers(0, h - size + 1))
            left = int(rng.integers(0, w - size + 1))
            texture = self.texture(top + inset, left + inset, core)
            self.drawn += 1
            if texture >= self.min_texture:
                if not self.min_sharpness or self.sharpness(top + inset, left + inset, core) >= self.min_sharpness:
                    best = (top, left)
                    break
                self.soft += 1
            self.rejected += 1
            if texture > best_texture:
                best, best_texture = (top, left), texture
        top, left = best
        return self.image[top : top + size, left : left + size]


def _core_and_inset(size: int, core: int | None) -> tuple[int, int]:
    """The side of a crop's central square that is judged (all of it for None) and its offset from the crop's corner;
    `ValueError` echoing a core outside 1 to `size`."""
    core = size if core is None else int(core)
    if not 1 <= core <= size:
        raise ValueError(f"core must be 1 to the crop size {size}, got {core!r}.")
    return core, (size - core) // 2


def gradient_magnitude(image: np.ndarray) -> np.ndarray:
    """Per-pixel gradient magnitude of the gray image (0..255 scale), float32."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=1, scale=0.5, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=1, scale=0.5, borderType=cv2.BORDER_REFLECT)
    return cv2.magnitude(gx, gy)


def keep_texture(image: np.ndarray, cut: np.ndarray, min_texture: float, inset: int = 0, size: int | None = None) -> np.ndarray:
    """`image` (float32 0..255, the crop `cut` after jitter) with its levels stretched up from its darkest one just
    enough for its central square (`size` px from `inset`; all of it by default) to get back the mean gradient
    `cut` had there, or `min_texture` if that is less; clipped at 255. Unchanged when it has that texture already
    or none at all. Contrast and underexposure jitter can flatten a crop that was textured when it was cut: blur
    would not show in it, and `blurnet predict` leaves such a tile out. A crop cut flat stays as flat; the darkest
    level stays where it is, so a dim crop is brightened rather than clipped to black."""
    size = image.shape[0] - 2 * inset if size is None else size

    def texture(pixels):
        return float(gradient_magnitude(pixels[inset : inset + size, inset : inset + size]).mean())

    now = texture(image)
    if now >= min_texture or now <= 0:
        return image
    target = min(texture(np.ascontiguousarray(cut)), min_texture)
    if now >= target:
        return image
    floor = np.float32(image.min())
    return np.minimum((image - floor) * np.float32(target / now) + floor, np.float32(255.0))
