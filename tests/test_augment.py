import numpy as np
import pytest

from data_pipeline.augment import AugmentConfig, augment_sharp, maybe_jpeg


def test_no_augmentation_is_identity():
    crop = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    out = augment_sharp(crop, np.random.default_rng(1), AugmentConfig.none())
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, crop.astype(np.float32))
    assert maybe_jpeg(out, np.random.default_rng(0), AugmentConfig.none()) is out


def test_augmentation_changes_values_within_range_and_keeps_shape():
    crop = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    rng = np.random.default_rng(2)
    outs = [augment_sharp(crop, rng, AugmentConfig()) for _ in range(20)]
    assert all(o.shape == (24, 24, 3) and o.min() >= 0 and o.max() <= 255 for o in outs)
    assert len({round(float(o.mean()), 3) for o in outs}) == 20
    # Flips and rotations only permute pixels: sorted gray values match the plain jitter.
    geo = AugmentConfig(contrast=(1, 1), brightness=(0, 0), gamma=(1, 1), colour=0.0, jpeg_probability=0)
    g = augment_sharp(crop, rng, geo)
    np.testing.assert_array_equal(np.sort(g.ravel()), np.sort(crop.astype(np.float32).ravel()))


def test_jpeg_always_with_probability_one():
    img = np.random.default_rng(0).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    out = maybe_jpeg(img, np.random.default_rng(0), AugmentConfig(jpeg_probability=1.0, jpeg_quality=(50, 50)))
    assert out.shape == img.shape and 1.0 < np.abs(out - img).mean() < 60


def test_bad_config():
    with pytest.raises(ValueError, match="1.5"):
        AugmentConfig(jpeg_probability=1.5)
    with pytest.raises(ValueError, match="uint8"):
        augment_sharp(np.zeros((4, 4, 3), np.float32), np.random.default_rng(0), AugmentConfig())


def test_jpeg_roundtrip_loses_more_at_lower_quality():
    from data_pipeline.augment import jpeg_roundtrip

    img = np.random.default_rng(1).uniform(0, 255, (48, 48, 3)).astype(np.float32)
    errors = [np.abs(jpeg_roundtrip(img, q) - img).mean() for q in (95, 75, 30)]
    assert errors[0] < errors[1] < errors[2]
    assert jpeg_roundtrip(img, 75).dtype == np.float32
    with pytest.raises(ValueError, match="101"):
        jpeg_roundtrip(img, 101)


def test_jpeg_roundtrip_treats_the_array_as_rgb():
    from data_pipeline.augment import jpeg_roundtrip

    detail = np.random.default_rng(2).uniform(0, 255, (64, 64)).astype(np.float32)

    def error_with_detail_in(channel):
        img = np.full((64, 64, 3), 128.0, np.float32)
        img[..., channel] = detail
        return np.abs(jpeg_roundtrip(img, 75)[..., channel] - detail).mean()

    # JPEG keeps luma best; red weighs 0.299 in luma, blue 0.114, so red detail survives better.
    assert error_with_detail_in(0) < 0.9 * error_with_detail_in(2)
    grey = np.random.default_rng(3).uniform(0, 255, (32, 32, 1)).astype(np.float32)
    assert jpeg_roundtrip(grey, 90).shape == (32, 32, 1)
