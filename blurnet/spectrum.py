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

An earlier version fed the spectrum of the whole image as a fourth input channel
of the backbone; its layout changed with the image size, and the bundled model
trained on 64 px crops dropped from 0.89 to 0.61 accuracy on 128 px crops of the
same photograph (README, "The bundled model").
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

WINDOW = 32
STRIDE = WINDOW // 2


@keras.saving.register_keras_serializable(package="blurnet")
class WelchSpectrum(layers.Layer):
    """RGB images `(batch, h, w, 3)`, h and w >= 32 -> standardised log power spectrum `(batch, 32, 32, 1)`."""

    def __init__(self, **kwargs):
        # Always float32, even under a mixed-precision policy: bfloat16 rounds pixels
        # to whole grey levels near 128 and wipes out the faint high frequencies.
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)

    def call(self, inputs):
        shape = tf.shape(inputs)
        tf.debugging.assert_greater_equal(
            tf.minimum(shape[1], shape[2]), WINDOW, message=f"WelchSpectrum needs images of at least {WINDOW} x {WINDOW} px"
        )
        gray = tf.reduce_mean(tf.cast(inputs, tf.float32), axis=-1, keepdims=True)
        patches = tf.image.extract_patches(
            gray, sizes=[1, WINDOW, WINDOW, 1], strides=[1, STRIDE, STRIDE, 1], rates=[1, 1, 1, 1], padding="VALID"
        )
        batch = tf.shape(patches)[0]
        patches = tf.reshape(patches, [batch, -1, WINDOW, WINDOW])
        patches = patches - tf.reduce_mean(patches, axis=[2, 3], keepdims=True)
        hann = tf.signal.hann_window(WINDOW, periodic=False)
        patches = patches * (hann[:, None] * hann[None, :])
        power = tf.reduce_mean(tf.abs(tf.signal.fft2d(tf.complex(patches, 0.0))) ** 2, axis=1)
        # A floor relative to the image's own mean power keeps flat images finite
        # and makes the map independent of contrast.
        floor = 1e-6 * tf.reduce_mean(power, axis=[1, 2], keepdims=True) + 1e-12
        spectrum = tf.math.log(tf.signal.fftshift(power, axes=[1, 2]) + floor)
        mean, variance = tf.nn.moments(spectrum, axes=[1, 2], keepdims=True)
        spectrum = (spectrum - mean) / tf.sqrt(variance + 1e-6)
        return spectrum[..., None]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], WINDOW, WINDOW, 1)


def spectrum_features(images, units: int = 128):
    """The spectral branch on a Keras tensor of RGB images: Welch spectrum -> 3 conv stages -> Dense(`units`).

    The map is flattened, not pooled: in a spectrum the position is the
    frequency, which global pooling would throw away. Layers are named
    `spectrum_*`; no BatchNormalization, so nothing here depends on batch statistics.
    """
    x = WelchSpectrum(name="spectrum")(images)
    for i, filters in enumerate((16, 32, 64)):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"spectrum_conv{i + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"spectrum_pool{i + 1}")(x)
    x = layers.Flatten(name="spectrum_flatten")(x)
    return layers.Dense(units, activation="relu", name="spectrum_dense")(x)
