import cv2
import numpy as np
import pytest

from data_pipeline.quality import MIN_HIGH_FREQUENCY_RATIO, high_frequency_ratio, is_sharp_source
from tests.conftest import textured_image


def test_white_noise_has_a_flat_spectrum():
    noise = np.random.default_rng(0).normal(128, 20, (256, 256)).astype(np.float32)
    # Flat up to the Hann window's leakage of the removed mean into the lowest bins.
    assert 0.85 < high_frequency_ratio(noise) < 1.05


def test_mild_gaussian_blur_divides_the_ratio():
    sharp = textured_image(0, 256, 256).astype(np.float32)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 1.0)
    before, after = high_frequency_ratio(sharp), high_frequency_ratio(blurred)
    assert before > MIN_HIGH_FREQUENCY_RATIO and after < before / 10
    assert is_sharp_source(sharp)
    assert not is_sharp_source(cv2.GaussianBlur(sharp, (0, 0), 2.0))


def test_grey_and_rgb_agree_and_small_images_are_refused():
    rgb = textured_image(1, 96, 128)
    assert high_frequency_ratio(rgb) == pytest.approx(high_frequency_ratio(rgb.astype(np.float32).mean(axis=-1)), rel=1e-5)
    with pytest.raises(ValueError, match="31x64"):
        high_frequency_ratio(np.zeros((31, 64)))
