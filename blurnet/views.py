"""Test-time augmentation: the model's answer averaged over flipped and rotated views.

Flips and 90-degree rotations do not change the type of blur: a flipped Gaussian
or disk PSF is the same PSF, a flipped or rotated line is still a linear motion
PSF (the pipeline draws every angle), and sharp stays sharp. The 8 views of the
dihedral group are therefore 8 looks at the same answer, and their mean softmax
has less variance than one look. Measured on the bundled model's held-out split
(README, "The bundled model"): 1 view 0.970, 4 views 0.976, 8 views 0.977.

`views` is 1 (the image as given), 4 (as given, flipped left-right, flipped
up-down, rotated 180 degrees: the views that keep height and width) or 8 (those
4 of the transposed image as well). Inference costs `views` times as much.
The exported SavedModel averages inside `serve` (`blurnet.export`), so
TensorFlow users get the same answers as blurnet without extra code.
"""
from __future__ import annotations

import numpy as np

from data_pipeline.classes import NUM_CLASSES
from data_pipeline.parameters import PARAMETER_TARGETS

VIEW_COUNTS = (1, 4, 8)
#: Per view, in `average_over_views`' order (as given, flipped left-right, flipped up-down, rotated 180 degrees,
#: then the same 4 of the transposed image), the signs that turn a streak's doubled angle `(cos 2θ, sin 2θ)` seen in
#: that view back into the image's own: a flip mirrors the angle (θ -> -θ), the transpose reflects it about
#: 45 degrees (θ -> 90 - θ), a half turn keeps it (tests/test_views.py checks each on a motion PSF).
DOUBLED_ANGLE_SIGNS = np.array([[1, 1], [1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1], [-1, -1], [-1, 1]], np.float32)
#: Per view, the signs for a model's whole answer with the parameter head, its probabilities then its raw
#: parameters (`data_pipeline.parameters.PARAMETER_TARGETS`): sizes and probabilities do not change under flips and
#: rotations, the angle's doubled-angle point turns back (`DOUBLED_ANGLE_SIGNS`).
ANSWER_VIEW_SIGNS = np.ones((len(DOUBLED_ANGLE_SIGNS), NUM_CLASSES + len(PARAMETER_TARGETS)), np.float32)
ANSWER_VIEW_SIGNS[:, [NUM_CLASSES + PARAMETER_TARGETS.index(c) for c in ("angle_cos", "angle_sin")]] = DOUBLED_ANGLE_SIGNS


def check_views(views) -> int:
    """`views` as an int; `ValueError` echoing it unless it is one of `VIEW_COUNTS`."""
    if isinstance(views, bool) or views not in VIEW_COUNTS:
        raise ValueError(f"views must be one of {VIEW_COUNTS}, got {views!r}.")
    return int(views)


class _NumpyOps:
    """The five array operations the views need, for numpy arrays (callers without TensorFlow: ONNX, LiteRT)."""

    asarray = staticmethod(np.asarray)
    reverse = staticmethod(lambda x, axis: np.flip(x, axis=axis))
    concat = staticmethod(lambda xs: np.concatenate(xs, axis=0))
    transpose = staticmethod(lambda x: np.transpose(x, (0, 2, 1, 3)))
    shape = staticmethod(lambda x: x.shape)

    @staticmethod
    def mean_over_groups(outputs, groups: int, signs):
        per_view = np.asarray(outputs).reshape(groups, -1, np.shape(outputs)[-1])
        return (per_view if signs is None else per_view * signs[:groups, None, :]).mean(axis=0)


class _TensorFlowOps:
    """The same operations as graph ops, for the SavedModel's `serve` (any batch, height and width)."""

    def __init__(self):
        import tensorflow as tf

        self.tf = tf
        self.asarray = tf.convert_to_tensor
        self.reverse = lambda x, axis: tf.reverse(x, axis=[axis])
        self.concat = lambda xs: tf.concat(xs, axis=0)
        self.transpose = lambda x: tf.transpose(x, perm=[0, 2, 1, 3])
        self.shape = tf.shape

    def mean_over_groups(self, outputs, groups: int, signs):
        per_view = self.tf.reshape(outputs, self.tf.stack([groups, -1, self.tf.shape(outputs)[-1]]))
        if signs is not None:
            per_view = per_view * self.tf.constant(signs[:groups, None, :], per_view.dtype)
        return self.tf.reduce_mean(per_view, axis=0)


def _ops_for(images):
    return _NumpyOps if isinstance(images, np.ndarray) else _TensorFlowOps()


def average_over_views(predict, images, views: int = 8, signs=None):
    """Mean of `predict` (images -> (batch, k) answers, e.g. probabilities) over `views` dihedral views of `images`.

    `images` is a (batch, height, width, channels) array of any height and width:
    a numpy array (then `predict` gets and returns numpy arrays and TensorFlow is
    never imported) or a TensorFlow tensor (graph ops, as inside `serve`). Each
    group of views of one shape goes through `predict` in one call. `signs`
    `(8, k)`: each view's answers are multiplied by its row first, in the order
    below (`ANSWER_VIEW_SIGNS` turns the head's angle back into the image's own).
    """
    views = check_views(views)
    if signs is not None:
        signs = np.asarray(signs, np.float32)
        if signs.ndim != 2 or signs.shape[0] < views:
            raise ValueError(f"signs must be a (views, columns) array with a row per view, got shape {signs.shape!r}.")
    ops = _ops_for(images)
    images = ops.asarray(images)
    if views == 1:
        answer = predict(images)
        return answer if signs is None else answer * ops.asarray(signs[0])
    groups = [images] if views == 4 else [images, ops.transpose(images)]
    outputs = []
    for group in groups:
        # as given, flipped left-right, flipped up-down, rotated 180 degrees: the views that keep the shape
        flipped_lr = ops.reverse(group, 2)
        same_shape = ops.concat([group, flipped_lr, ops.reverse(group, 1), ops.reverse(flipped_lr, 1)])
        outputs.append(predict(same_shape))
    return ops.mean_over_groups(ops.concat(outputs), views, signs)
