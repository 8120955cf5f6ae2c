"""`benchmarks/camera_steps.py`'s underexposed step."""
import numpy as np
from conftest import load_benchmark


def test_underexposed_crops_keep_their_shape_and_lose_brightness_and_grey_levels():
    steps = load_benchmark("camera_steps")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (16, 24, 24, 3)).astype(np.float32)
    dim = steps.underexposed(images, steps.EXPOSURE_STEPS["dim_0.3_0.5"], np.random.default_rng(1))
    assert dim.shape == images.shape and dim.dtype == np.float32
    np.testing.assert_array_equal(dim, np.round(dim))  # 8-bit levels again
    ratios = dim.mean(axis=(1, 2, 3)) / images.mean(axis=(1, 2, 3))
    assert 0.29 <= ratios.min() and ratios.max() <= 0.51 and ratios.std() > 0.03  # one factor per crop, 0.3 to 0.5
    assert dim.max() <= 0.5 * 255 + 0.5 and len(np.unique(dim)) <= 129
