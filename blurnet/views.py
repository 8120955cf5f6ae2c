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

import tensorflow as tf

VIEW_COUNTS = (1, 4, 8)


def check_views(views) -> int:
    """`views` as an int; `ValueError` echoing it unless it is one of `VIEW_COUNTS`."""
    if isinstance(views, bool) or views not in VIEW_COUNTS:
        raise ValueError(f"views must be one of {VIEW_COUNTS}, got {views!r}.")
    return int(views)


def _same_shape_views(images):
    """(4 * batch, h, w, c): as given, flipped left-right, flipped up-down, rotated 180 degrees."""
    flipped_lr = tf.reverse(images, axis=[2])
    return tf.concat([images, flipped_lr, tf.reverse(images, axis=[1]), tf.reverse(flipped_lr, axis=[1])], axis=0)


def average_over_views(predict, images, views: int = 8):
    """Mean of `predict` (images -> (batch, classes) probabilities) over `views` dihedral views of `images`.

    `images` is a (batch, height, width, channels) tensor of any height and width;
    each group of views of one shape goes through `predict` in one call.
    """
    views = check_views(views)
    images = tf.convert_to_tensor(images)
    if views == 1:
        return predict(images)
    batch = tf.shape(images)[0]
    groups = [images] if views == 4 else [images, tf.transpose(images, perm=[0, 2, 1, 3])]
    outputs = []
    for group in groups:
        probabilities = predict(_same_shape_views(group))
        outputs.append(tf.reshape(probabilities, tf.concat([[4, batch], tf.shape(probabilities)[1:]], axis=0)))
    return tf.reduce_mean(tf.concat(outputs, axis=0), axis=0)
