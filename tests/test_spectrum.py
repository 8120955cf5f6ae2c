import numpy as np
import pytest

from blurnet.spectrum import WINDOW, WelchSpectrum


def cosine_image(height, width, period):
    x = np.arange(width, dtype="float32")
    row = 128 + 100 * np.cos(2 * np.pi * x / period)
    return np.tile(row[None, :, None], (height, 1, 3))[None]


@pytest.mark.parametrize("shape", [(32, 32), (40, 72), (128, 96)])
def test_fixed_size_standardised_map_for_any_image_size(shape):
    out = np.asarray(WelchSpectrum()(cosine_image(*shape, period=8)))
    assert out.shape == (1, WINDOW, WINDOW, 1)
    spectrum = out[0, :, :, 0]
    assert spectrum.mean() == pytest.approx(0.0, abs=1e-4) and spectrum.std() == pytest.approx(1.0, abs=1e-3)
    # 8 px period = 4 cycles per 32 px window: the peak sits 4 bins right or left of the centre.
    peak = np.unravel_index(np.argmax(spectrum), spectrum.shape)
    assert peak[0] == WINDOW // 2 and abs(peak[1] - WINDOW // 2) == 4


def test_same_texture_same_map_whatever_the_size():
    rng = np.random.default_rng(0)
    texture = rng.normal(128, 30, (256, 256)).astype("float32")
    texture = (texture + np.roll(texture, 1, axis=1)) / 2  # a known low-pass: power falls off along x
    small = np.repeat(texture[:64, :64, None], 3, axis=2)[None]
    large = np.repeat(texture[..., None], 3, axis=2)[None]
    a, b = (np.asarray(WelchSpectrum()(x))[0, :, :, 0] for x in (small, large))
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
    # The averaging filter zeroes the highest horizontal frequency: column 0 (f = -0.5) is the dimmest.
    assert b[:, 0].mean() < b[:, WINDOW // 2 + 1].mean() - 2.0


def test_contrast_does_not_change_the_map():
    image = np.random.default_rng(1).uniform(0, 100, (1, 64, 64, 3)).astype("float32")
    a, b = (np.asarray(WelchSpectrum()(x)) for x in (image, 2.5 * image + 10))
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_float32_under_mixed_precision():
    import keras

    image = np.random.default_rng(2).uniform(100, 156, (1, 64, 64, 3)).astype("float32")
    expected = np.asarray(WelchSpectrum()(image))
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = WelchSpectrum()
        out = layer(image)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert layer.compute_dtype == "float32" and out.dtype == "float32"
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-4)


def test_too_small_images_are_refused_not_nan():
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 32 x 32"):
        WelchSpectrum()(np.zeros((1, 31, 64, 3), "float32"))
