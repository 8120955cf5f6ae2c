import numpy as np
import pytest

from data_pipeline.crops import TexturedCropper, gradient_magnitude


def half_flat_image():
    image = np.full((100, 200, 3), 90, np.uint8)
    rng = np.random.default_rng(0)
    image[:, 100:] = rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)  # right half textured
    return image


def test_gradient_magnitude_of_a_ramp():
    ramp = np.tile(np.arange(64, dtype=np.uint8) * 3, (32, 1))
    g = gradient_magnitude(np.repeat(ramp[:, :, None], 3, axis=2))
    assert g[5:-5, 5:-5].mean() == pytest.approx(3.0, abs=0.05)


def test_crops_avoid_flat_regions_and_count_rejections():
    cropper = TexturedCropper(half_flat_image(), min_texture=4.0)
    rng = np.random.default_rng(1)
    for _ in range(50):
        crop = cropper.crop(rng, 40)
        assert crop.shape == (40, 40, 3)
        assert gradient_magnitude(np.ascontiguousarray(crop)).mean() >= 4.0  # never only the flat half
        assert crop[:, -1].std() > 20  # so its right edge is in the textured half
    assert 0.2 < cropper.rejected / cropper.drawn < 0.8


def test_a_crops_core_is_what_must_be_textured():
    """A 90 px crop whose central 20 px must be textured: the core lies in the textured half, though most of the crop
    may be flat (judged as a whole, a crop two-thirds flat and one-third noise passes too)."""
    image = half_flat_image()
    cropper = TexturedCropper(image, min_texture=4.0)
    rng = np.random.default_rng(2)
    for _ in range(50):
        crop = cropper.crop(rng, 90, core=20)
        core = np.ascontiguousarray(crop[35:55, 35:55])
        assert core.std() > 20  # never a flat core (the flat half has std 0)
    whole = TexturedCropper(image, min_texture=4.0)
    cores = [whole.crop(rng, 90)[35:55, 35:55].std() for _ in range(50)]
    assert min(cores) == 0.0  # judged whole, some crops keep a flat core
    # A photograph is admitted as its crops are judged: by a textured core.
    stripe = np.full((100, 100, 3), 90, np.uint8)
    stripe[:, 90:] = np.random.default_rng(3).integers(0, 256, (100, 10, 3), dtype=np.uint8)  # texture at one edge
    assert TexturedCropper(stripe).has_texture(90) and not TexturedCropper(stripe).has_texture(90, core=20)
    with pytest.raises(ValueError, match="core must be 1 to the crop size 90, got 91"):
        cropper.crop(rng, 90, core=91)


def test_texture_is_mean_gradient():
    cropper = TexturedCropper(half_flat_image())
    assert cropper.texture(10, 10, 40) == pytest.approx(0.0)
    assert cropper.texture(10, 150, 40) > 20


def test_has_texture_and_errors():
    flat = TexturedCropper(np.full((64, 64, 3), 5, np.uint8))
    assert not flat.has_texture(32)
    assert TexturedCropper(half_flat_image()).has_texture(60)
    with pytest.raises(ValueError, match="larger than"):
        flat.crop(np.random.default_rng(0), 65)
    crop = flat.crop(np.random.default_rng(0), 32)  # falls back to the best candidate
    assert crop.shape == (32, 32, 3) and flat.rejected == flat.drawn == 20


def test_crops_of_a_blurred_part_are_rejected_when_sharpness_is_asked_for():
    import cv2

    from data_pipeline.quality import high_frequency_ratio
    from tests.test_quality import blocks

    image = blocks(3, 160, 320)
    image[:, 160:] = cv2.GaussianBlur(image, (0, 0), 1.5)[:, 160:]  # a defocused right half, still textured
    assert high_frequency_ratio(image) > 0.003 and gradient_magnitude(image)[:, 170:].mean() > 4.0
    for min_sharpness, blurred_share in ((0.0, (0.3, 0.7)), (0.003, (0.0, 0.0))):
        cropper = TexturedCropper(image, min_sharpness=min_sharpness)
        rng = np.random.default_rng(0)
        ratios = [high_frequency_ratio(cropper.crop(rng, 96, core=64).astype(np.float32)[16:80, 16:80]) for _ in range(100)]
        share = np.mean(np.array(ratios) < 0.003)
        assert blurred_share[0] <= share <= blurred_share[1]
        assert cropper.soft == (0 if min_sharpness == 0 else cropper.rejected) and cropper.rejected <= cropper.drawn
    assert 0.2 < cropper.soft / cropper.drawn < 0.8  # about half the candidates lie in the blurred half


def test_sharpness_is_judged_in_photographs_narrower_than_the_maps_minimum_side():
    from data_pipeline.quality import high_frequency_ratio

    rng = np.random.default_rng(0)
    narrow = rng.integers(0, 256, (200, 50, 3), dtype=np.uint8)  # 50 px: under min_side (63)
    cropper = TexturedCropper(narrow, min_sharpness=0.003)
    assert cropper.sharpness_map.min_side == 63
    crops = [cropper.crop(rng, 48) for _ in range(30)]  # every square is moved onto the grid of 32 px windows
    assert all(c.shape == (48, 48, 3) for c in crops) and cropper.soft == 0  # white noise: sharp everywhere
    # a 50 px square at row 129 holds no window at rows 0, 32, ...: judged on rows 128..177, which hold the one at 128
    assert cropper.sharpness(129, 0, 48) == pytest.approx(high_frequency_ratio(narrow[128:160, 0:32]), rel=1e-6)
    assert cropper.sharpness_map.whole() == pytest.approx(high_frequency_ratio(narrow), rel=1e-9)
