"""The spectral branch: a Welch-averaged log power spectrum and the small network that reads it.

Blur multiplies an image's spectrum by the PSF's transfer function: a Gaussian
fall-off, the rings of a disk, the stripes of a streak. `WelchSpectrum` turns an
image of any size into a fixed 32 x 32 map of that print: the grey image is cut
into 32 x 32 windows (half overlapping), each has its mean removed, is multiplied
by a Hann window and Fourier-transformed, and the power is averaged over all
windows (Welch's method). So frequency f always sits at the same place in the
map, whatever the image size, and a larger image only gives a less noisy
estimate. The log power is standardised per image (brightness and contrast do
not matter) and shifted so that frequency 0 sits in the middle.

The transforms are written with `keras.ops` only (patches, then a 32-point DFT
as two small matrix products with the Hann window and the shift folded into
constant matrices), so the layer runs on any Keras backend and exports to
formats without an FFT operator. Its answer equals a numpy FFT of the same
windows to float32 precision (tests/test_spectrum.py).
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

WINDOW = 32
STRIDE = WINDOW // 2


def _shifted_dft_matrices() -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary parts of the 32-point DFT matrix, rows in fftshift order (frequency 0 in the middle)."""
    k = np.fft.fftshift(np.arange(WINDOW))[:, None]
    n = np.arange(WINDOW)[None, :]
    angle = 2.0 * np.pi * k * n / WINDOW
    return np.cos(angle).astype(np.float32), -np.sin(angle).astype(np.float32)


_HANN = np.hanning(WINDOW).astype(np.float32)  # symmetric, as tf.signal.hann_window(periodic=False)
_DFT_REAL, _DFT_IMAG = _shifted_dft_matrices()


@keras.saving.register_keras_serializable(package="blurnet")
class WelchSpectrum(layers.Layer):
    """RGB images `(batch, h, w, 3)`, h and w >= 32 -> standardised log power spectrum `(batch, 32, 32, 1)`."""

    def __init__(self, **kwargs):
        # Always float32, even under a mixed-precision policy: bfloat16 rounds pixels
        # to whole grey levels near 128 and wipes out the faint high frequencies.
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)

    def call(self, inputs):
        if keras.backend.backend() == "tensorflow":  # a clear error instead of an empty average (NaN)
            import tensorflow as tf

            shape = tf.shape(inputs)
            tf.debugging.assert_greater_equal(
                tf.minimum(shape[1], shape[2]), WINDOW, message=f"WelchSpectrum needs images of at least {WINDOW} x {WINDOW} px"
            )
        gray = ops.mean(ops.cast(inputs, "float32"), axis=-1, keepdims=True)
        patches = ops.image.extract_patches(gray, WINDOW, strides=STRIDE, padding="valid", data_format="channels_last")
        batch = ops.shape(patches)[0]
        patches = ops.reshape(patches, (batch, -1, WINDOW, WINDOW))
        patches = patches - ops.mean(patches, axis=(2, 3), keepdims=True)
        patches = patches * ops.convert_to_tensor(np.outer(_HANN, _HANN))
        # 2-D DFT F = D X D^T with D = C + iS (rows shifted): Re = CXC' - SXS', Im = CXS' + SXC'.
        c, s = ops.convert_to_tensor(_DFT_REAL), ops.convert_to_tensor(_DFT_IMAG)
        cx = ops.einsum("kn,bwnm->bwkm", c, patches)
        sx = ops.einsum("kn,bwnm->bwkm", s, patches)
        real = ops.einsum("bwkm,lm->bwkl", cx, c) - ops.einsum("bwkm,lm->bwkl", sx, s)
        imag = ops.einsum("bwkm,lm->bwkl", cx, s) + ops.einsum("bwkm,lm->bwkl", sx, c)
        power = ops.mean(real * real + imag * imag, axis=1)
        # A floor relative to the image's own mean power keeps flat images finite
        # and makes the map independent of contrast.
        floor = 1e-6 * ops.mean(power, axis=(1, 2), keepdims=True) + 1e-12
        spectrum = ops.log(power + floor)
        mean = ops.mean(spectrum, axis=(1, 2), keepdims=True)
        variance = ops.var(spectrum, axis=(1, 2), keepdims=True)
        spectrum = (spectrum - mean) / ops.sqrt(variance + 1e-6)
        return spectrum[..., None]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], WINDOW, WINDOW, 1)


def spectrum_features(images, units: int = 128, prefix: str = "spectrum"):
    """The spectral branch on a Keras tensor of RGB images: Welch spectrum -> 3 conv stages -> Dense(`units`).

    The map is flattened, not pooled: in a spectrum the position is the
    frequency, which global pooling would throw away. Layers are named
    `<prefix>`, `<prefix>_*` (the classifier's branch `spectrum_*`, the
    parameter head's its own); no BatchNormalization, so nothing here depends on batch statistics.
    """
    x = WelchSpectrum(name=prefix)(images)
    for i, filters in enumerate((16, 32, 64)):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{prefix}_conv{i + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"{prefix}_pool{i + 1}")(x)
    x = layers.Flatten(name=f"{prefix}_flatten")(x)
    return layers.Dense(units, activation="relu", name=f"{prefix}_dense")(x)
