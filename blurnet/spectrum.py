"""The spectral branches: a Welch-averaged log power spectrum, a cepstrum, and the small networks that read them.

Blur multiplies an image's spectrum by the PSF's transfer function: a Gaussian
fall-off, the rings of a disk, the stripes of a streak. `WelchSpectrum` turns an
image of any size into a fixed 32 x 32 map of that print: the grey image is cut
into 32 x 32 windows (half overlapping), each has its mean removed, is multiplied
by a Hann window and Fourier-transformed, and the power is averaged over all
windows (Welch's method). So frequency f always sits at the same place in the
map, whatever the image size, and a larger image only gives a less noisy
estimate. The log power is standardised per image (brightness and contrast do
not matter) and shifted so that frequency 0 sits in the middle.

The transforms are written with `keras.ops` only (windows cut by reshaping, then a 32-point DFT
as two small matrix products with the Hann window and the shift folded into
constant matrices), so the layer runs on any Keras backend and exports to
formats without an FFT operator. Its answer equals a numpy FFT of the same
windows to float32 precision (tests/test_spectrum.py).

The parameter head (`blurnet.parameter_head`) also reads `Cepstrum`, the inverse
DFT of the log power of the central 96 px, where a streak's zeros become one
dip at its length, and `CepstrumDip`, that dip's place as numbers.
"""
from __future__ import annotations

import functools

import keras
import numpy as np
from keras import layers, ops

WINDOW = 32
#: The window `Cepstrum` reads: the central 96 x 96 px (the default training crop), four times the longest default streak.
CEPSTRUM_WINDOW = 96
#: The lags `Cepstrum` keeps, up to this many px from 0 each way: beyond the longest default streak (21 px).
CEPSTRUM_MAX_LAG = 24
#: Cepstrum lags nearer than this to 0 carry the spectrum's overall slope, not its periodic zeros: set to 0.
CEPSTRUM_MIN_LAG = 2.5
#: Temperatures of `CepstrumDip`'s soft minima, in standard deviations of the cepstrum.
DIP_TEMPERATURES = (0.1, 0.25, 0.5, 1.0)


@functools.cache
def _shifted_dft_matrices(window: int) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary parts of the `window`-point DFT matrix, rows in fftshift order (frequency 0 in the middle)."""
    k = np.fft.fftshift(np.arange(window))[:, None]
    n = np.arange(window)[None, :]
    angle = 2.0 * np.pi * k * n / window
    return np.cos(angle).astype(np.float32), -np.sin(angle).astype(np.float32)


@functools.cache
def _hann_2d(window: int) -> np.ndarray:
    """The separable Hann window (symmetric, as tf.signal.hann_window(periodic=False))."""
    hann = np.hanning(window)
    return np.outer(hann, hann).astype(np.float32)


def _half_overlapping_windows(gray, window: int):
    """Grey images `(batch, h, w)` -> every `window`-px window at a stride of `window / 2` that fits,
    `(batch, n, window, window)`, row by row (the windows of a "valid" patch extraction).

    The image, cropped to whole `window / 2` blocks, is reshaped into blocks; each window is 2 x 2 neighbouring
    blocks. Reshapes and slices only: `keras.ops.image.extract_patches` builds an identity-kernel convolution
    (a `window^2 x window^2` kernel) that costs as much as a small network.
    """
    half = window // 2
    shape = ops.shape(gray)
    rows, cols = shape[1] // half, shape[2] // half
    blocks = ops.reshape(gray[:, : rows * half, : cols * half], (shape[0], rows, half, cols, half))
    blocks = ops.transpose(blocks, (0, 1, 3, 2, 4))  # (batch, rows, cols, half, half)
    top = ops.concatenate([blocks[:, :-1, :-1], blocks[:, :-1, 1:]], axis=-1)
    bottom = ops.concatenate([blocks[:, 1:, :-1], blocks[:, 1:, 1:]], axis=-1)
    windows = ops.concatenate([top, bottom], axis=-2)  # (batch, rows - 1, cols - 1, window, window)
    return ops.reshape(windows, (shape[0], -1, window, window))


def _welch_log_power(images, window: int):
    """RGB images `(batch, h, w, 3)` -> Welch-averaged log power `(batch, window, window)`, frequency 0 in the middle.

    Grey image, `window`-px windows half overlapping, mean removed, Hann window, 2-D DFT as matrix products, power
    averaged over the windows, a floor of 1e-6 of the mean power (flat images stay finite, contrast drops out).
    """
    gray = ops.mean(ops.cast(images, "float32"), axis=-1)
    return _log_power(_half_overlapping_windows(gray, window), window)


def _log_power(patches, window: int):
    """Windows `(batch, n, window, window)` -> log of their mean power spectrum `(batch, window, window)`, shifted:
    each window's mean removed, Hann window, 2-D DFT as matrix products, a floor of 1e-6 of the mean power."""
    patches = patches - ops.mean(patches, axis=(2, 3), keepdims=True)
    patches = patches * ops.convert_to_tensor(_hann_2d(window))
    # 2-D DFT F = D X D^T with D = C + iS (rows shifted): Re = CXC' - SXS', Im = CXS' + SXC'.
    c, s = (ops.convert_to_tensor(m) for m in _shifted_dft_matrices(window))
    # Broadcast matrix products rather than einsum: LiteRT's converter gives an einsum over one window a tensor of
    # invalid shape.
    ct, st = ops.transpose(c), ops.transpose(s)
    cx, sx = ops.matmul(c, patches), ops.matmul(s, patches)
    real = ops.matmul(cx, ct) - ops.matmul(sx, st)
    imag = ops.matmul(cx, st) + ops.matmul(sx, ct)
    power = ops.mean(real * real + imag * imag, axis=1)
    floor = 1e-6 * ops.mean(power, axis=(1, 2), keepdims=True) + 1e-12
    return ops.log(power + floor)


def _standardised(maps):
    """Each map `(batch, h, w)` less its mean, over its standard deviation."""
    mean = ops.mean(maps, axis=(1, 2), keepdims=True)
    variance = ops.var(maps, axis=(1, 2), keepdims=True)
    return (maps - mean) / ops.sqrt(variance + 1e-6)


def _check_size(images, window: int) -> None:
    """A clear error (TensorFlow backend) instead of an empty average (NaN) for images below `window` px."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        shape = tf.shape(images)
        tf.debugging.assert_greater_equal(
            tf.minimum(shape[1], shape[2]), window, message=f"the spectral layers need images of at least {window} x {window} px"
        )


def shortfall(size, window: int):
    """Pixels `size` lacks to reach `window` (0 if none): a Python int where the size is known when the model
    is traced (under JAX always, under TensorFlow for fixed shapes), as `ops.pad` needs under JAX; a tensor otherwise."""
    if isinstance(size, (int, np.integer)):
        return max(window - int(size), 0)
    return ops.maximum(window - size, 0)


@keras.saving.register_keras_serializable(package="blurnet")
class WelchSpectrum(layers.Layer):
    """RGB images `(batch, h, w, 3)`, h and w >= 32 -> standardised log power spectrum `(batch, 32, 32, 1)`."""

    def __init__(self, **kwargs):
        # Always float32, even under a mixed-precision policy: bfloat16 rounds pixels
        # to whole grey levels near 128 and wipes out the faint high frequencies.
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)

    def call(self, inputs):
        _check_size(inputs, WINDOW)
        return _standardised(_welch_log_power(inputs, WINDOW))[..., None]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], WINDOW, WINDOW, 1)


@functools.cache
def _cepstrum_matrices(window: int, half: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine and sine halves of the inverse DFT from shifted frequencies to the lags -`half`..`half` only (the rows
    `Cepstrum` keeps), divided by `window`."""
    lags, k = np.arange(-half, half + 1), np.fft.fftshift(np.arange(window))
    angle = 2.0 * np.pi * lags[:, None] * k[None, :] / window
    return (np.cos(angle) / window).astype(np.float32), (np.sin(angle) / window).astype(np.float32)


def _lag_grid(half: int) -> tuple[np.ndarray, np.ndarray]:
    """Distance from lag 0 and direction (radians, counter-clockwise on screen) of each lag in a `2 half + 1` square."""
    offsets = np.arange(-half, half + 1)
    dx, dy = np.meshgrid(offsets, offsets)
    return np.hypot(dx, dy), np.arctan2(-dy, dx)  # rows run down the screen


@keras.saving.register_keras_serializable(package="blurnet")
class Cepstrum(layers.Layer):
    """RGB images `(batch, h, w, 3)` -> the standardised real cepstrum of their central 96 x 96 px, lags -24..24 each
    way: `(batch, 49, 49, 1)`, lag 0 in the middle.

    A streak of length L puts a zero in the spectrum every 1/L cycles/px along its direction; the cepstrum (the
    inverse DFT of the log power) turns that comb into one dip at lag L along the streak, a position the layers after
    it can read off (`CepstrumDip`), where a 32 px spectrum has too few bins between zeros for a 21 px streak. A disk
    of radius R makes a ring of dips. One 96 px window (not Welch's average of smaller ones) keeps the zeros sharp;
    an image smaller than 96 px sits in the middle of a window padded with its mean (its answers are coarse). Lags
    under 2.5 px, the spectrum's overall slope, are set to 0.
    """

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"  # as WelchSpectrum: the faint high frequencies need float32
        super().__init__(**kwargs)

    def call(self, inputs):
        window, half = CEPSTRUM_WINDOW, CEPSTRUM_MAX_LAG
        gray = ops.mean(ops.cast(inputs, "float32"), axis=-1)
        shape = ops.shape(gray)
        short_h, short_w = shortfall(shape[1], window), shortfall(shape[2], window)
        mean = ops.mean(gray, axis=(1, 2), keepdims=True)
        gray = ops.pad(gray - mean, [[0, 0], [short_h // 2, short_h - short_h // 2], [short_w // 2, short_w - short_w // 2]]) + mean
        shape = ops.shape(gray)
        top, left = (shape[1] - window) // 2, (shape[2] - window) // 2
        centre = gray[:, top : top + window, left : left + window]  # no batch size in the slice: LiteRT keeps it dynamic
        log_power = _log_power(centre[:, None], window)
        cos, sin = (ops.convert_to_tensor(m) for m in _cepstrum_matrices(window, half))
        # Real part of the 2-D inverse DFT at the kept lags: cos L cos' - sin L sin'.
        cepstrum = ops.matmul(ops.matmul(cos, log_power), ops.transpose(cos)) - ops.matmul(ops.matmul(sin, log_power), ops.transpose(sin))
        cepstrum = cepstrum * ops.convert_to_tensor((_lag_grid(half)[0] >= CEPSTRUM_MIN_LAG).astype(np.float32))
        return _standardised(cepstrum)[..., None]

    def compute_output_shape(self, input_shape):
        side = 2 * CEPSTRUM_MAX_LAG + 1
        return (input_shape[0], side, side, 1)


@functools.cache
def _dip_matrices(half: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a `2 half + 1` square of lags: the radial-profile weights `(lags, half + 1)` (linear interpolation in
    distance), 1 where a lag takes part in the soft minimum (`CEPSTRUM_MIN_LAG + 0.5` to `half` px), and each lag's
    geometry `(lags, 4)`: distance / half, its square, cos 2φ, sin 2φ."""
    distance, direction = (m.ravel() for m in _lag_grid(half))
    profile = np.clip(1.0 - np.abs(distance[:, None] - np.arange(half + 1)[None, :]), 0.0, None)
    profile /= np.maximum(profile.sum(axis=0, keepdims=True), 1e-6)
    inside = ((distance >= CEPSTRUM_MIN_LAG + 0.5) & (distance <= half)).astype(np.float32)
    scaled = distance / half
    geometry = np.stack([scaled, scaled ** 2, np.cos(2 * direction), np.sin(2 * direction)], axis=1)
    return profile.astype(np.float32), inside, geometry.astype(np.float32)


@keras.saving.register_keras_serializable(package="blurnet")
class CepstrumDip(layers.Layer):
    """`Cepstrum`'s map `(batch, 49, 49, 1)` -> `(batch, 25 + 4 * 4)`: where its dip is, as numbers.

    The radial profile (mean over the lags at each whole distance 0..24 px), then for each temperature T in
    `DIP_TEMPERATURES` the soft minimum's place: weights softmax(-c / T) over the lags 3 to 24 px from 0, and the
    weighted mean of distance / 24, its square, cos 2φ and sin 2φ (doubled angles: a dip and its mirror image
    agree). On the 128 straight streaks among 512 clean held-out 96 px crops the weighted distance at T = 0.25 alone
    was the length within 0.49 px on average: the layers after it mostly have to learn when to trust it.
    """

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)

    def call(self, inputs):
        profile, inside, geometry = (ops.convert_to_tensor(m) for m in _dip_matrices(CEPSTRUM_MAX_LAG))
        cepstrum = ops.reshape(inputs, (ops.shape(inputs)[0], -1))
        features = [ops.matmul(cepstrum, profile)]
        for temperature in DIP_TEMPERATURES:
            weights = ops.softmax(-cepstrum / temperature + (inside - 1.0) * 1e4, axis=-1)
            features.append(ops.matmul(weights, geometry))
        return ops.concatenate(features, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], CEPSTRUM_MAX_LAG + 1 + 4 * len(DIP_TEMPERATURES))


def _spectral_convs(x, units: int, prefix: str):
    """3 conv stages (16, 32, 64 filters, 2 x 2 max pooling) -> Flatten -> Dense(`units`, relu), named `<prefix>_*`."""
    for i, filters in enumerate((16, 32, 64)):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{prefix}_conv{i + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"{prefix}_pool{i + 1}")(x)
    x = layers.Flatten(name=f"{prefix}_flatten")(x)
    return layers.Dense(units, activation="relu", name=f"{prefix}_dense")(x)


def spectrum_features(images, units: int = 128, prefix: str = "spectrum"):
    """The spectral branch on a Keras tensor of RGB images: Welch spectrum -> 3 conv stages -> Dense(`units`).

    The map is flattened, not pooled: in a spectrum the position is the
    frequency, which global pooling would throw away. Layers are named
    `<prefix>`, `<prefix>_*` (the classifier's branch `spectrum_*`, the
    parameter head's its own); no BatchNormalization, so nothing here depends on batch statistics.
    """
    return _spectral_convs(WelchSpectrum(name=prefix)(images), units, prefix)


def cepstrum_features(images, units: int = 256, prefix: str = "cepstrum"):
    """The cepstral branch: `Cepstrum` -> the same 3 conv stages -> Dense(`units`), concatenated with `CepstrumDip`'s
    numbers; layers named `<prefix>`, `<prefix>_*`. What the parameter head reads the streak's length from."""
    cepstrum = Cepstrum(name=prefix)(images)
    dip = CepstrumDip(name=f"{prefix}_dip")(cepstrum)
    return layers.Concatenate(name=f"{prefix}_features")([_spectral_convs(cepstrum, units, prefix), dip])
