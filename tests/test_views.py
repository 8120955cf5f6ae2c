import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from blurnet.views import ANSWER_VIEW_SIGNS, DOUBLED_ANGLE_SIGNS, VIEW_COUNTS, average_over_views, check_views


def numpy_views(images, views):
    """The dihedral views written out with numpy, in no particular order."""
    rotations = [np.rot90(images, k, axes=(1, 2)) for k in range(4)]
    if views == 4:  # the ones that keep height and width
        rotations = rotations[0::2]
    return [v for r in rotations for v in (r, r[:, :, ::-1])]


def orientation_sensitive(images):
    """Probabilities that change under every flip and rotation: from row/column-weighted means."""
    images = tf.convert_to_tensor(images)
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    rows = tf.cast(tf.range(h), tf.float32)[None, :, None, None]
    cols = tf.cast(tf.range(w), tf.float32)[None, None, :, None]
    x = images[..., :1] / 255.0
    logits = tf.stack([tf.reduce_mean(x * rows, [1, 2, 3]), tf.reduce_mean(x * cols, [1, 2, 3]),
                       tf.reduce_mean(x * rows * cols, [1, 2, 3]) / 10.0, tf.reduce_mean(x, [1, 2, 3])], axis=1)
    return tf.nn.softmax(logits)


def numpy_predict(images):
    """`orientation_sensitive` as a numpy function (what an ONNX or LiteRT caller passes)."""
    assert isinstance(images, np.ndarray)
    return orientation_sensitive(images).numpy()


@pytest.mark.parametrize("array", ["numpy", "tensorflow"])
@pytest.mark.parametrize("views", [4, 8])
def test_average_equals_the_mean_over_numpy_views(views, array):
    images = np.random.default_rng(0).uniform(0, 255, (3, 5, 7, 3)).astype("float32")  # not square
    expected = np.mean([orientation_sensitive(v).numpy() for v in numpy_views(images, views)], axis=0)
    if array == "numpy":
        got = average_over_views(numpy_predict, images, views)
        assert isinstance(got, np.ndarray)
    else:
        got = average_over_views(orientation_sensitive, tf.constant(images), views).numpy()
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
    single = orientation_sensitive(images).numpy()
    assert np.abs(got - single).max() > 1e-3  # the test function does see the views


def test_one_view_is_the_plain_call_and_symmetric_inputs_change_nothing():
    images = np.random.default_rng(1).uniform(0, 255, (2, 6, 6, 3)).astype("float32")
    np.testing.assert_array_equal(average_over_views(numpy_predict, images, 1), orientation_sensitive(images).numpy())
    flat = np.full((2, 6, 6, 3), 100.0, "float32")  # identical in every view
    np.testing.assert_allclose(average_over_views(numpy_predict, flat, 8),
                               orientation_sensitive(flat).numpy(), rtol=1e-6)


def test_average_works_inside_a_tf_function_with_unknown_shape():
    fn = tf.function(lambda x: average_over_views(orientation_sensitive, x, 8),
                     input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    images = np.random.default_rng(2).uniform(0, 255, (2, 4, 9, 3)).astype("float32")
    np.testing.assert_allclose(fn(images).numpy(), average_over_views(numpy_predict, images, 8), rtol=1e-6)


def test_numpy_views_do_not_import_tensorflow():
    script = (
        "import sys; sys.modules['tensorflow'] = None\n"  # any import of it fails
        "import numpy as np; from blurnet.views import average_over_views\n"
        "x = np.arange(2 * 3 * 5 * 3, dtype='float32').reshape(2, 3, 5, 3)\n"
        "p = average_over_views(lambda v: np.stack([v[:, 0, 0, 0], v[:, -1, -1, 0]], axis=1), x, 8)\n"
        "print(p.shape, p.tolist())"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    # corner (0,0) of the 8 views visits each of the 4 corners twice: the mean of the 4 corner values
    x = np.arange(2 * 3 * 5 * 3, dtype="float32").reshape(2, 3, 5, 3)
    corners = (x[:, 0, 0, 0] + x[:, 0, -1, 0] + x[:, -1, 0, 0] + x[:, -1, -1, 0]) / 4
    assert done.stdout.strip() == f"(2, 2) {np.stack([corners, corners], axis=1).tolist()}"


@pytest.mark.parametrize("bad", [0, 2, 3, 16, "8", True, None])
def test_check_views_echoes_bad_values(bad):
    with pytest.raises(ValueError, match=repr(bad).replace("(", r"\(")):
        check_views(bad)
    assert [check_views(v) for v in VIEW_COUNTS] == [1, 4, 8]


@pytest.mark.parametrize("angle", [20.0, 65.0, 140.0])
def test_doubled_angle_signs_turn_each_view_of_a_streak_back(angle):
    from data_pipeline.psf import motion_psf, motion_spread

    kernel = np.pad(motion_psf(15, angle), 4)[None, :, :, None].astype("float32")
    seen = []
    average_over_views(lambda group: seen.extend(group) or np.zeros((len(group), 4)), kernel, 8)
    assert len(seen) == 8
    doubled = np.deg2rad(2 * angle)
    for view, signs in zip(seen, DOUBLED_ANGLE_SIGNS):
        _, measured = motion_spread(view[:, :, 0])
        turned_back = signs * [np.cos(np.deg2rad(2 * measured)), np.sin(np.deg2rad(2 * measured))]
        np.testing.assert_allclose(turned_back, [np.cos(doubled), np.sin(doubled)], atol=0.02)


def test_signs_turn_each_views_answer_before_the_mean():
    import tensorflow as tf

    image = np.array([[1, 2], [3, 4]], "float32")[None, :, :, None]  # each view has its own top-left pixel
    top_left = np.array([1, 2, 3, 4, 1, 3, 2, 4], "float32")  # as given, flipped lr, ud, 180, then the transposed 4
    signs = np.ones((8, 3), "float32")
    signs[1::2, 2] = -1  # column 2 flips sign in every other view

    def predict(group):
        return np.repeat(np.asarray(group)[:, 0, 0, :1], 3, axis=1)

    expected = [[top_left.mean(), top_left.mean(), (top_left * signs[:, 2]).mean()]]
    np.testing.assert_allclose(average_over_views(predict, image, 8, signs), expected)  # [2.5, 2.5, -0.75]
    np.testing.assert_allclose(average_over_views(predict, image, 8), [[2.5, 2.5, 2.5]])
    tf_answer = average_over_views(lambda g: tf.repeat(g[:, 0, 0, :1], 3, axis=1), tf.constant(image), 8, signs)
    np.testing.assert_allclose(tf_answer.numpy(), expected)  # the SavedModel's graph ops agree
    np.testing.assert_allclose(average_over_views(predict, image, 4, signs), [[2.5, 2.5, (1 - 2 + 3 - 4) / 4]])
    np.testing.assert_allclose(average_over_views(predict, image, 1, signs), [[1, 1, 1]])
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        average_over_views(predict, image, 8, signs[:2])


def test_answer_signs_turn_only_the_angle():
    from data_pipeline.classes import NUM_CLASSES
    from data_pipeline.parameters import PARAMETER_TARGETS

    angle = [NUM_CLASSES + PARAMETER_TARGETS.index(c) for c in ("angle_cos", "angle_sin")]
    np.testing.assert_array_equal(ANSWER_VIEW_SIGNS[:, angle], DOUBLED_ANGLE_SIGNS)
    others = np.delete(ANSWER_VIEW_SIGNS, angle, axis=1)
    assert others.shape == (8, 7) and (others == 1).all()
