import numpy as np
import pytest

from data_pipeline import scenes
from data_pipeline.batches import BlurBatchMaker, PipelineConfig
from data_pipeline.quality import MIN_HIGH_FREQUENCY_RATIO, high_frequency_ratio


def test_leaf_radii_follow_the_inverse_cube_density():
    radii = scenes.leaf_radii(np.random.default_rng(0), 200_000, (2.0, 100.0))
    assert radii.min() >= 2.0 and radii.max() <= 100.0
    for t in (3.0, 5.0, 20.0):  # CDF of r**-3 on [a, b]: (a**-2 - t**-2) / (a**-2 - b**-2)
        expected = (2.0**-2 - t**-2) / (2.0**-2 - 100.0**-2)
        assert np.mean(radii < t) == pytest.approx(expected, abs=0.005)
    # the mean square radius leaf_count uses: 2 a**2 ln(b / a) / (1 - (a / b)**2)
    assert np.mean(radii**2) == pytest.approx(2 * 4 * np.log(50) / (1 - 0.02**2), rel=0.03)
    with pytest.raises(ValueError, match=r"\(5, 5\)"):
        scenes.leaf_radii(np.random.default_rng(0), 3, (5, 5))


def test_leaf_count_covers_the_scene_but_exp_minus_coverage():
    """Drawing leaf_count white disks over black leaves about exp(-COVERAGE) of the scene uncovered."""
    import cv2

    height, width, radii = 200, 300, (2.0, 40.0)
    count = scenes.leaf_count(height, width, radii)
    rng = np.random.default_rng(1)
    r = scenes.leaf_radii(rng, count, radii)
    y, x = rng.uniform(-40, height + 40, count), rng.uniform(-40, width + 40, count)
    mask = np.zeros((height, width), np.uint8)
    for cy, cx, radius in zip(y, x, r):
        cv2.circle(mask, (int(round(cx)), int(round(cy))), int(round(radius)), 255, -1)
    uncovered = np.mean(mask == 0)
    assert 0.2 * np.exp(-scenes.COVERAGE) < uncovered < 5 * np.exp(-scenes.COVERAGE)


def test_shading_has_unit_mean_the_asked_contrast_and_a_one_over_f_spectrum():
    field = scenes.shading(np.random.default_rng(2), 256, 256, amplitude=0.1)
    assert field.shape == (256, 256) and field.dtype == np.float32
    assert field.mean() == pytest.approx(1.0, abs=1e-4) and field.std() == pytest.approx(0.1, rel=1e-3)
    amplitude = np.abs(np.fft.fft2(field - 1.0))
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(256), np.fft.fftfreq(256), indexing="ij"))
    low, high = amplitude[(f > 0.05) & (f < 0.1)].mean(), amplitude[(f > 0.1) & (f < 0.2)].mean()
    assert low / high == pytest.approx(2.0, rel=0.15)  # 1/f: one octave up, half the amplitude


def test_dead_leaves_scene_is_sharp_textured_and_antialiased():
    image = scenes.dead_leaves(np.random.default_rng(3), 192, 256)
    assert image.shape == (192, 256, 3) and image.dtype == np.uint8
    assert high_frequency_ratio(image) > 2 * MIN_HIGH_FREQUENCY_RATIO  # the batch maker keeps it as sharp
    grey = image.astype(np.float32).mean(axis=2)
    assert grey.std() > 30  # leaves of many grey levels
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 5000  # shading and antialiased edges, not a few flat colours
    flat = scenes.dead_leaves(np.random.default_rng(3), 192, 256, radii=(40.0, 80.0))
    def edge_fraction(picture):
        grey = picture.astype(np.float32).mean(axis=2)
        return np.mean(np.hypot(np.diff(grey, axis=0)[:, :-1], np.diff(grey, axis=1)[:-1]) > 20)

    assert edge_fraction(flat) < 0.5 * edge_fraction(image)  # larger leaves, fewer edges
    for bad in ((5, 5), (0, 5)):
        with pytest.raises(ValueError, match=rf"got \({bad[0]}, {bad[1]}\)"):
            scenes.dead_leaves(np.random.default_rng(0), 32, 32, radii=bad)
    with pytest.raises(ValueError, match="0 x 5"):
        scenes.dead_leaves(np.random.default_rng(0), 0, 5)


def test_generated_scenes_are_reproducible_named_photographs_a_batch_maker_uses():
    first, again = scenes.generated_scenes(2, seed=4, side=160), scenes.generated_scenes(2, seed=4, side=160)
    assert [p.name for p in first] == [p.group for p in first] == ["dead-leaves-0", "dead-leaves-1"]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, again))
    assert not np.array_equal(first[0].image, first[1].image)
    assert not np.array_equal(first[0].image, scenes.generated_scenes(1, seed=5, side=160)[0].image)
    assert scenes.generated_scenes(0) == []
    with pytest.raises(ValueError, match="-1"):
        scenes.generated_scenes(-1)
    maker = BlurBatchMaker(first, PipelineConfig(image_size=32, batch_size=8), "train")
    assert maker.photo_names == ["dead-leaves-0", "dead-leaves-1"] and not maker.left_out
    images, labels, _ = maker.make_batch(0)
    assert images.shape == (8, 32, 32, 3) and np.isfinite(images).all() and images.std() > 10
