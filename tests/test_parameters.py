"""Blur parameters as regression targets: masks per class, the doubled angle, unknown parameters."""
import numpy as np
import pytest

from data_pipeline.batches import BlurBatchMaker, PipelineConfig
from data_pipeline.classes import CLASS_NAMES
from data_pipeline.parameters import PARAMETER_TARGETS, angle_degrees, parameter_targets, raw_from_estimates


def test_each_class_trains_only_its_own_parameters():
    labels = np.array([CLASS_NAMES.index(c) for c in ("sharp", "gaussian", "motion", "defocus")])
    params = np.array([[0.0, 0.0, 1.0], [2.5, 0.0, 1.0], [17.0, 30.0, 1.0], [6.0, 0.0, 1.0]], np.float32)
    targets, mask = parameter_targets(labels, params)
    assert PARAMETER_TARGETS == ("sigma", "length", "angle_cos", "angle_sin", "radius")
    np.testing.assert_array_equal(mask, [[0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0, 1, 1, 1, 0], [0, 0, 0, 0, 1]])
    np.testing.assert_allclose(targets, [[0, 0, 0, 0, 0], [2.5, 0, 0, 0, 0], [0, 17, 0.5, np.sqrt(3) / 2, 0], [0, 0, 0, 0, 6]],
                               atol=1e-6)


def test_the_doubled_angle_has_no_jump_at_0_and_180_and_reads_back():
    labels = np.full(5, CLASS_NAMES.index("motion"))
    angles = np.array([0.0, 1.0, 90.0, 179.0, 180.0], np.float32)
    targets, _ = parameter_targets(labels, np.stack([np.full(5, 9.0), angles, np.zeros(5)], axis=1))
    point = targets[:, 2:4]
    assert np.linalg.norm(point[1] - point[3]) == pytest.approx(2 * np.sin(np.deg2rad(2.0)), abs=1e-5)  # 1 and 179 deg are close
    np.testing.assert_allclose(point[0], point[4], atol=1e-6)  # 0 and 180 deg are one direction
    np.testing.assert_allclose(angle_degrees(point[:, 0], point[:, 1]), [0, 1, 90, 179, 0], atol=1e-4)
    np.testing.assert_allclose(angle_degrees(3 * point[:, 0], 3 * point[:, 1]), [0, 1, 90, 179, 0], atol=1e-4)  # any length
    # decoded estimates (a SavedModel's `estimate`) back in the head's layout: the same doubled-angle point
    raw = raw_from_estimates(np.full(5, 1.5), np.full(5, 9.0), angles, np.full(5, 4.0))
    assert raw.shape == (5, 5)
    np.testing.assert_allclose(raw[:, 2:4], point, atol=1e-6)
    np.testing.assert_allclose(raw[:, [0, 1, 4]], [[1.5, 9.0, 4.0]] * 5)


def test_unknown_parameters_and_bad_input():
    labels = np.array([1, 3])
    targets, mask = parameter_targets(labels, np.full((2, 3), np.nan, np.float32))
    assert mask.sum() == 0 and np.isfinite(targets).all() and targets.sum() == 0
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 2\)"):
        parameter_targets(labels, np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"\[1, 4\]"):
        parameter_targets(np.array([1, 4]), np.zeros((2, 3)))


def test_targets_of_pipeline_batches_are_their_sampled_parameters(photos):
    maker = BlurBatchMaker(photos, PipelineConfig(image_size=32, batch_size=16), "test")
    _, labels, params = maker.make_batch(0)
    targets, mask = parameter_targets(labels, params)
    assert mask.sum() == sum({1: 1, 2: 3, 3: 1}.get(int(l), 0) for l in labels)
    gaussian, motion, defocus = (labels == 1), (labels == 2), (labels == 3)
    assert gaussian.any() and motion.any() and defocus.any()
    np.testing.assert_allclose(targets[gaussian, 0], params[gaussian, 0])
    np.testing.assert_allclose(targets[motion, 1], params[motion, 0])
    np.testing.assert_allclose(angle_degrees(targets[motion, 2], targets[motion, 3]), params[motion, 1] % 180, atol=1e-3)
    np.testing.assert_allclose(targets[defocus, 4], params[defocus, 0])
