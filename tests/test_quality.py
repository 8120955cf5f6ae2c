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


def blocks(seed: int, height: int, width: int) -> np.ndarray:
    """Random 4 px blocks of colour: texture and sharp edges everywhere (no flat region)."""
    small = np.random.default_rng(seed).integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)


def test_the_sharpness_map_measures_a_region_as_the_ratio_of_the_region_itself():
    from data_pipeline.quality import SharpnessMap

    image = blocks(2, 192, 256)
    image[:, 128:] = cv2.GaussianBlur(image, (0, 0), 2.0)[:, 128:]  # right half blurred
    sharpness = SharpnessMap(image)  # windows side by side, as high_frequency_ratio takes them
    for top, left, size in ((0, 0, 64), (32, 64, 96), (0, 128, 64), (64, 160, 96), (0, 0, 192)):
        region = image[top : top + size, left : left + size]
        assert sharpness.ratio(top, left, size) == pytest.approx(high_frequency_ratio(region), rel=1e-6)
    assert sharpness.ratio(64, 16, 96) > MIN_HIGH_FREQUENCY_RATIO > sharpness.ratio(64, 144, 96)
    # an unaligned square takes the windows inside it: 10..73 holds the window at 32..63
    assert sharpness.ratio(10, 10, 64) == pytest.approx(high_frequency_ratio(image[32:64, 32:64]), rel=1e-6)
    assert sharpness.min_side == 63
    with pytest.raises(ValueError, match="a 40 px square at \\(10, 10\\) holds no 32 px window"):
        sharpness.ratio(10, 10, 40)
    overlapping = SharpnessMap(image, stride=16)  # a 47 px square holds a window wherever it lies
    assert overlapping.min_side == 47
    ratios = [overlapping.ratio(top, left, 47) for top in range(0, 145, 7) for left in range(0, 81, 7)]
    assert min(ratios) > MIN_HIGH_FREQUENCY_RATIO  # the sharp half, at every offset
    assert overlapping.ratio(16, 16, 32) == pytest.approx(high_frequency_ratio(image[16:48, 16:48]), rel=1e-6)
