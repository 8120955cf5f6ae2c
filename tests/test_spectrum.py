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


def numpy_welch(image):
    """The reference: grey, every 32 px window at a stride of 16 px, mean removed, Hann window, mean power by numpy's
    FFT, log with the layer's floor, frequency 0 in the middle, standardised."""
    gray = image.mean(axis=-1)
    windows = np.stack([gray[y : y + WINDOW, x : x + WINDOW] for y in range(0, gray.shape[0] - WINDOW + 1, WINDOW // 2)
                        for x in range(0, gray.shape[1] - WINDOW + 1, WINDOW // 2)])
    windows = (windows - windows.mean(axis=(1, 2), keepdims=True)) * np.outer(np.hanning(WINDOW), np.hanning(WINDOW))
    power = (np.abs(np.fft.fft2(windows)) ** 2).mean(axis=0)
    log_power = np.fft.fftshift(np.log(power + 1e-6 * power.mean() + 1e-12))
    return (log_power - log_power.mean()) / np.sqrt(log_power.var() + 1e-6)


@pytest.mark.parametrize("shape", [(32, 32), (40, 72), (100, 131), (96, 96)])
def test_welch_spectrum_equals_a_numpy_fft_of_the_same_windows(shape):
    images = np.random.default_rng(5).uniform(0, 255, (2, *shape, 3)).astype("float32")
    images[1] = box_blur_3x3(images[1])
    got = np.asarray(WelchSpectrum()(images))[..., 0]
    for image, answer in zip(images, got):
        np.testing.assert_allclose(answer, numpy_welch(image.astype("float64")), atol=2e-3)


def box_blur_3x3(image):
    """A 3 x 3 box blur in numpy (a spectrum with a fall-off, not white noise)."""
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
    return sum(padded[y : y + image.shape[0], x : x + image.shape[1]] for y in range(3) for x in range(3)) / 9


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


def numpy_cepstrum(image):
    """The reference: grey, central 96 px, mean removed, Hann window, log power with the layer's floor, real
    cepstrum by numpy's FFT, lags -24..24, those under 2.5 px set to 0, standardised."""
    from blurnet.spectrum import CEPSTRUM_MAX_LAG, CEPSTRUM_MIN_LAG, CEPSTRUM_WINDOW

    gray = image.mean(axis=-1)
    top, left = (gray.shape[0] - CEPSTRUM_WINDOW) // 2, (gray.shape[1] - CEPSTRUM_WINDOW) // 2
    window = gray[top:top + CEPSTRUM_WINDOW, left:left + CEPSTRUM_WINDOW]
    power = np.abs(np.fft.fft2((window - window.mean()) * np.outer(np.hanning(CEPSTRUM_WINDOW), np.hanning(CEPSTRUM_WINDOW)))) ** 2
    cepstrum = np.fft.fftshift(np.real(np.fft.ifft2(np.log(power + 1e-6 * power.mean() + 1e-12))))
    middle, half = CEPSTRUM_WINDOW // 2, CEPSTRUM_MAX_LAG
    cepstrum = cepstrum[middle - half:middle + half + 1, middle - half:middle + half + 1]
    offsets = np.arange(-half, half + 1)
    cepstrum[np.hypot(*np.meshgrid(offsets, offsets)) < CEPSTRUM_MIN_LAG] = 0.0
    return (cepstrum - cepstrum.mean()) / np.sqrt(cepstrum.var() + 1e-6)


def test_cepstrum_layer_equals_numpy_fft_of_the_central_window():
    from blurnet.spectrum import Cepstrum

    image = np.random.default_rng(2).uniform(0, 255, (120, 101, 3)).astype("float32")
    out = np.asarray(Cepstrum()(image[None]))
    assert out.shape == (1, 49, 49, 1)
    np.testing.assert_allclose(out[0, :, :, 0], numpy_cepstrum(image.astype("float64")), atol=1e-4)


def streak_cepstrum(length, angle, size=96):
    import cv2

    from blurnet.spectrum import Cepstrum
    from data_pipeline.psf import motion_psf

    texture = cv2.GaussianBlur(np.random.default_rng(1).uniform(0, 255, (size + 64, size + 64)).astype("float32"), (0, 0), 0.7)
    blurred = cv2.filter2D(texture, -1, motion_psf(length, angle))[32:32 + size, 32:32 + size]
    return np.asarray(Cepstrum()(np.repeat(blurred[None, ..., None], 3, axis=-1)))


@pytest.mark.parametrize("length, angle", [(9, 0), (15, 30), (13, 120), (17, 75)])
def test_a_streak_is_a_cepstrum_dip_at_its_length_along_its_direction(length, angle):
    from blurnet.spectrum import CEPSTRUM_MAX_LAG

    cepstrum = streak_cepstrum(length, angle)[0, :, :, 0]
    row, col = np.unravel_index(np.argmin(cepstrum), cepstrum.shape)
    dy, dx = row - CEPSTRUM_MAX_LAG, col - CEPSTRUM_MAX_LAG
    assert abs(np.hypot(dx, dy) - length) < 1.0
    assert abs((np.degrees(np.arctan2(-dy, dx)) - angle + 90) % 180 - 90) < 5.0  # rows run down the screen


@pytest.mark.parametrize("length, angle", [(7, 10), (15, 30), (21, 160)])
def test_the_dip_numbers_give_the_streak_length_and_direction(length, angle):
    from blurnet.spectrum import CEPSTRUM_MAX_LAG, DIP_TEMPERATURES, CepstrumDip

    numbers = np.asarray(CepstrumDip()(streak_cepstrum(length, angle)))[0]
    assert numbers.shape == (CEPSTRUM_MAX_LAG + 1 + 4 * len(DIP_TEMPERATURES),)
    distance, _, cos2, sin2 = numbers[CEPSTRUM_MAX_LAG + 1 + 4:CEPSTRUM_MAX_LAG + 1 + 8]  # T = 0.25
    assert abs(distance * CEPSTRUM_MAX_LAG - length) < 1.0
    assert abs((np.degrees(np.arctan2(sin2, cos2)) / 2 - angle + 90) % 180 - 90) < 5.0
    profile = numbers[:CEPSTRUM_MAX_LAG + 1]
    assert np.argmin(profile[3:]) + 3 == pytest.approx(length, abs=1)  # the ring at the streak's length is the lowest


def test_cepstrum_layer_pads_images_smaller_than_its_window():
    from blurnet.spectrum import Cepstrum

    image = np.random.default_rng(3).uniform(0, 255, (2, 40, 50, 3)).astype("float32")
    out = np.asarray(Cepstrum()(image))
    assert out.shape == (2, 49, 49, 1) and np.isfinite(out).all()
    assert out.std(axis=(1, 2, 3)) == pytest.approx([1.0, 1.0], abs=0.01)  # standardised (the 1e-6 guard costs ~0.1 %)


def test_a_small_image_sits_in_the_middle_of_the_window():
    from blurnet.spectrum import Cepstrum

    image = np.random.default_rng(4).uniform(0, 255, (64, 64, 3))
    padded = np.full((96, 96, 3), image.mean(axis=(0, 1)))  # the mean of the grey image: every channel's mean
    padded[16:80, 16:80] = image
    np.testing.assert_allclose(np.asarray(Cepstrum()(image[None].astype("float32"))),
                               np.asarray(Cepstrum()(padded[None].astype("float32"))), atol=1e-4)


def test_shortfall_is_a_python_int_for_known_sizes():
    """Known sizes give Python ints (JAX's `pad` refuses traced widths); a tensor size gives the same number."""
    import keras

    from blurnet.spectrum import shortfall

    assert [shortfall(s, 64) for s in (32, 63, 64, 200)] == [32, 1, 0, 0]
    assert all(type(shortfall(s, 64)) is int for s in (32, 200))
    assert int(keras.ops.convert_to_numpy(shortfall(keras.ops.convert_to_tensor(40), 64))) == 24
