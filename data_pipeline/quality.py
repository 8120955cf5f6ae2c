"""Is a photograph sharp enough to be a source of the `sharp` class?

The pipeline labels every unblurred crop `sharp`, so a source that is already
blurred (a microscope image, a soft scan) teaches and tests the wrong label: the
bundled `cell` image, blurred by its optics, was called gaussian in 88 % of its
`sharp` crops by both the model and a spectral baseline.

`high_frequency_ratio` measures what such sources lack: the mean power at high
frequencies (radius > 0.25 cycles/px) over the mean power at middle frequencies
(0.0625 to 0.125 cycles/px), from a Welch average over 32 x 32 Hann windows of
the grey image. The sharp bundled photographs score 0.0066 to 0.083; a Gaussian
blur of sigma 1.0 (the mildest blur of the default ranges) divides the score by 19
to 78.
`MIN_HIGH_FREQUENCY_RATIO` = 0.003 sits between the two groups of the bundled
photographs: it leaves out cell (0.0005), retina (0.0013) and brick (0.0019).
"""
from __future__ import annotations

import numpy as np

MIN_HIGH_FREQUENCY_RATIO = 0.003
_WINDOW = 32


def _grey(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, np.float32)
    gray = image.mean(axis=-1) if image.ndim == 3 else image
    if min(gray.shape) < _WINDOW:
        raise ValueError(f"image must be at least {_WINDOW} px on each side, got {gray.shape[0]}x{gray.shape[1]}.")
    return gray


def _bands() -> tuple[np.ndarray, np.ndarray]:
    """Masks of a window's spectrum: the high band (radius > 0.25 cycles/px) and the middle one (0.0625 to 0.125)."""
    f = np.fft.fftfreq(_WINDOW)
    radius = np.hypot(f[:, None], f[None, :])
    return radius > 0.25, (radius > 0.0625) & (radius <= 0.125)


def _band_powers(gray: np.ndarray, tops, lefts) -> tuple[np.ndarray, np.ndarray]:
    """Mean high-band and middle-band power `(len(tops), len(lefts))` of the Hann-windowed `_WINDOW`-px windows of
    `gray` at those corners, one row of windows at a time (memory stays small)."""
    hann = np.outer(np.hanning(_WINDOW), np.hanning(_WINDOW)).astype(np.float32)
    high_band, middle_band = _bands()
    lefts = np.asarray(lefts)
    columns = lefts[:, None] + np.arange(_WINDOW)[None, :]
    high, middle = np.zeros((len(tops), len(lefts))), np.zeros((len(tops), len(lefts)))
    for i, top in enumerate(tops):
        windows = gray[top : top + _WINDOW][:, columns].transpose(1, 0, 2)  # (n, 32, 32)
        windows = windows - windows.mean(axis=(1, 2), keepdims=True)
        power = np.abs(np.fft.fft2(windows * hann)) ** 2
        high[i], middle[i] = power[:, high_band].mean(axis=1), power[:, middle_band].mean(axis=1)
    return high, middle


def high_frequency_ratio(image: np.ndarray) -> float:
    """High- over middle-frequency mean power of an image (grey or RGB, any size >= 32 px); higher is sharper."""
    return SharpnessMap(image).whole()


class SharpnessMap:
    """`high_frequency_ratio` of any square region of a photograph in O(1): the windows' band powers on a grid of
    `stride` px (default: the windows of `high_frequency_ratio`, side by side), summed over the windows that lie
    inside the region (summed-area tables). A photograph that passes as a whole can hold blurred parts (a defocused
    background); a crop of them must not stand for `sharp`."""

    def __init__(self, image: np.ndarray, stride: int = _WINDOW):
        gray = _grey(image)
        h, w = gray.shape
        self.stride = int(stride)
        high, middle = _band_powers(gray, range(0, h - _WINDOW + 1, self.stride), range(0, w - _WINDOW + 1, self.stride))
        self._high = np.pad(high.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        self._middle = np.pad(middle.cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def whole(self) -> float:
        """The ratio over every window: with the default stride, `high_frequency_ratio` of the whole image."""
        middle = self._middle[-1, -1]
        return float(self._high[-1, -1] / middle) if middle > 0 else 0.0

    def _span(self, start: int, size: int, count: int) -> tuple[int, int]:
        """Grid indices [first, last) of the windows inside [start, start + size)."""
        first = -(-start // self.stride)
        last = min((start + size - _WINDOW) // self.stride + 1, count)
        return first, max(first, last)

    @property
    def min_side(self) -> int:
        """The smallest square that holds a window wherever it lies."""
        return _WINDOW + self.stride - 1

    def ratio(self, top: int, left: int, size: int) -> float:
        """The high-frequency ratio of the square at (`top`, `left`) with side `size` (at least `min_side` wherever
        it lies; `ValueError` for a square that holds no window); 0 when its middle band holds no power."""
        y0, y1 = self._span(top, size, self._high.shape[0] - 1)
        x0, x1 = self._span(left, size, self._high.shape[1] - 1)
        if y1 <= y0 or x1 <= x0:
            raise ValueError(f"a {size} px square at ({top}, {left}) holds no {_WINDOW} px window of the {self.stride} px grid.")

        def total(table):
            return table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]

        middle = total(self._middle)
        return float(total(self._high) / middle) if middle > 0 else 0.0


def is_sharp_source(image: np.ndarray, min_ratio: float = MIN_HIGH_FREQUENCY_RATIO) -> bool:
    """True when `image` keeps enough high frequencies to stand for the `sharp` class."""
    return high_frequency_ratio(image) >= min_ratio
