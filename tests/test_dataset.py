import numpy as np
import pytest

from data_pipeline.crops import keep_texture
from data_pipeline.dataset import BlurBatchMaker, PipelineConfig, evaluation_dataset, training_dataset
from data_pipeline.degrade import PsfFamilies
from data_pipeline.degrade import BlurParams, make_psf
from data_pipeline.classes import BlurRanges

CFG = PipelineConfig(image_size=32, batch_size=8, seed=3)


def take(ds, n):
    return [tuple(t.numpy() for t in batch) for batch in ds.take(n)]


def test_batches_have_the_contract_shapes_and_are_balanced(photos):
    batches = take(training_dataset(photos, CFG), 4)
    x, y = batches[0]
    assert x.shape == (8, 32, 32, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert 0 <= x.min() and x.max() <= 255
    labels = np.concatenate([b[1] for b in batches])
    np.testing.assert_array_equal(np.bincount(labels, minlength=4), [8, 8, 8, 8])


def test_same_seed_same_batches_other_seed_different(photos):
    a = take(training_dataset(photos, CFG), 2)
    b = take(training_dataset(photos, CFG), 2)
    c = take(training_dataset(photos, PipelineConfig(image_size=32, batch_size=8, seed=4)), 2)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][0], c[0][0])


def test_evaluation_set_is_fixed_and_carries_params(photos):
    ds = evaluation_dataset(photos, CFG, "val", num_images=20, with_params=True)
    first, second = take(ds, 10), take(ds, 10)
    assert len(first) == 3  # 20 images rounded up to whole batches of 8
    for (x1, y1, p1), (x2, y2, p2) in zip(first, second):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(p1, p2)
    p = np.concatenate([b[2] for b in first])
    y = np.concatenate([b[1] for b in first])
    r = BlurRanges()
    assert np.all(p[y == 0, 0] == 0)
    assert np.all((p[y == 1, 0] >= r.gaussian_sigma[0]) & (p[y == 1, 0] <= r.gaussian_sigma[1]))
    assert np.all((p[y == 3, 0] >= r.defocus_radius[0]) & (p[y == 3, 0] <= r.defocus_radius[1]))
    assert np.all((p[:, 2] >= 0) & (p[:, 2] <= 2.5))
    # val and test streams differ
    t = take(evaluation_dataset(photos, CFG, "test", 8), 1)
    assert not np.array_equal(t[0][0], first[0][0])


def test_blur_in_a_batch_matches_its_params(photos):
    """A blurred sample is smoother than the same crop left sharp: check the gradient energy by class."""
    maker = BlurBatchMaker(photos, PipelineConfig(image_size=48, batch_size=64, seed=0), "val")
    x, y, p = maker.make_batch(0)
    energy = (np.diff(x, axis=2) ** 2).mean(axis=(1, 2, 3))  # blur preserves total variation, not energy
    assert energy[y == 0].mean() > 2 * max(energy[y == 1].mean(), energy[y == 2].mean(), energy[y == 3].mean())


def test_where_a_sample_is_cut_from_does_not_depend_on_its_class(photos):
    """Every class's kept square is placed as for the widest margin: a class-dependent margin would keep photograph
    edges for the classes with small PSFs (sharp) and cut them from the others."""
    maker = BlurBatchMaker(photos, PipelineConfig(image_size=48, batch_size=64, seed=0), "train")
    asked = []
    for cropper in maker.croppers:
        def crop(rng, size, core=None, cropper=cropper, original=cropper.crop):
            asked.append((size, core))
            return original(rng, size, core)
        cropper.crop = crop
    x, y, _ = maker.make_batch(0)
    assert len(asked) == 64 and set(asked) == {(48 + 2 * maker.margin, 48)}  # textured where it is kept
    assert x.shape == (64, 48, 48, 3) and np.isfinite(x).all() and np.bincount(y).tolist() == [16] * 4


def test_workers_get_distinct_streams(photos):
    a = BlurBatchMaker(photos, CFG, "train", worker=0).make_batch(0)[0]
    b = BlurBatchMaker(photos, CFG, "train", worker=1).make_batch(0)[0]
    assert not np.array_equal(a, b)


def test_no_usable_photograph_is_a_clear_error(photos):
    from data_pipeline.sources import Photo

    flat = [Photo("flat", "flat", np.full((100, 100, 3), 7, np.uint8))]
    with pytest.raises(ValueError, match="no photograph"):
        BlurBatchMaker(flat, CFG)
    with pytest.raises(ValueError, match="31"):
        PipelineConfig(image_size=31)
    with pytest.raises(ValueError, match="'train'"):
        evaluation_dataset(photos, CFG, "train", 8)


def test_already_blurred_photographs_are_left_out(photos, caplog):
    import dataclasses

    import cv2

    from data_pipeline.sources import Photo

    soft = Photo(name="soft", group="gs", image=cv2.GaussianBlur(photos[0].image, (0, 0), 2.0))
    config = PipelineConfig(image_size=32, batch_size=4)
    maker = BlurBatchMaker(photos[:2] + [soft], config, "train")
    assert maker.photo_names == ["p0", "p1"] and maker.left_out == {"soft": "already blurred"}
    [warning] = [r for r in caplog.records if r.name == "data_pipeline.batches"]
    assert warning.levelname == "WARNING" and "look blurred already" in warning.message and warning.message.endswith(": soft")
    kept = BlurBatchMaker(photos[:2] + [soft], dataclasses.replace(config, min_sharpness=0.0), "train")
    assert kept.photo_names == ["p0", "p1", "soft"]


def test_noise_for_an_image_larger_than_the_bank_is_drawn_fresh():
    from data_pipeline.batches import NoiseBank

    bank = NoiseBank(0)
    small = bank.draw(np.random.default_rng(1), (64, 64, 3))
    assert small.shape == (64, 64, 3) and np.shares_memory(small, bank.values)  # a window of the bank
    side = int(np.sqrt(NoiseBank.SIZE / 3)) + 1  # 1,183 px: more samples than the bank holds
    large = bank.draw(np.random.default_rng(1), (side, side, 3))
    assert large.shape == (side, side, 3) and large.dtype == np.float32 and not np.shares_memory(large, bank.values)
    assert abs(float(large.mean())) < 0.01 and abs(float(large.std()) - 1.0) < 0.01
    np.testing.assert_array_equal(large, bank.draw(np.random.default_rng(1), (side, side, 3)))  # from the seed


@pytest.mark.parametrize("classes, batch_size", [(range(4), 4), (range(4), 6), ([0, 2, 3], 5), ([1], 3)])
def test_balanced_labels_cycle_through_the_classes(classes, batch_size):
    from data_pipeline.classes import balanced_labels

    rng = np.random.default_rng(0)
    runs = np.concatenate([balanced_labels(rng, classes, batch_size, index) for index in range(len(classes))])
    counts = np.bincount(runs, minlength=4)  # len(classes) consecutive batches hold each class batch_size times
    np.testing.assert_array_equal(counts[list(classes)], batch_size)
    assert counts.sum() == batch_size * len(classes) and runs.dtype == np.int32
    with pytest.raises(ValueError, match="at least one class"):
        balanced_labels(rng, [], 4, 0)


def test_jitter_never_flattens_a_training_crop_below_the_texture_it_was_cut_with(photos):
    from data_pipeline.augment import AugmentConfig
    from data_pipeline.camera import CameraConfig
    from data_pipeline.crops import gradient_magnitude

    dim = AugmentConfig(contrast=(0.6, 0.6), underexposure_probability=1.0, underexposure_gain=(0.15, 0.15),
                        jpeg_probability=0.0, palette_probability=0.0)
    config = PipelineConfig(image_size=48, batch_size=64, seed=0, augment=dim, camera=CameraConfig.none(),
                            ranges=BlurRanges(noise_sigma=(0.0, 0.0)), families=PsfFamilies.classic())
    x, y, _ = BlurBatchMaker(photos, config, "train").make_batch(0)
    textures = np.array([gradient_magnitude(np.ascontiguousarray(image)).mean() for image in x[y == 0]])  # the sharp ones
    # contrast x0.6 and gain x0.15 left about a tenth of the texture: stretched back to the 4.0 they were cut with
    assert len(textures) == 16 and textures.min() > 3.8
    cut = np.full((40, 40, 3), 90, np.uint8)
    cut[(np.arange(40) // 2) % 2 == 0] += 8  # pairs of rows 8 levels apart: texture 4.0 (the edge rows 2.0)
    flattened = cut.astype(np.float32) / 4  # jitter took three quarters of it
    stretched = keep_texture(flattened, cut, 4.0)  # stretched back up from its darkest level, 22.5
    assert gradient_magnitude(stretched).mean() == pytest.approx(gradient_magnitude(cut).mean(), rel=1e-3)
    assert stretched.min() == 22.5 and gradient_magnitude(cut).mean() < 4.0  # back to what it had when cut, not to 4
    faint = (cut - 88).astype(np.uint8) + 88  # a crop cut with texture 0.2 (the fallback when nothing was textured)
    faint[(np.arange(40) // 2) % 2 == 0] = 89
    np.testing.assert_array_equal(keep_texture(faint.astype(np.float32), faint, 4.0), faint)  # never amplified
    assert keep_texture(np.full((40, 40, 3), 7, np.float32), cut, 4.0).max() == 7  # a flat crop stays flat
