"""The parameter head: how much blur, beside which kind.

`add_parameter_head(images, features)` puts a small regressor beside the class head: the classifier's
pooled features concatenated with two spectral branches of the head's own: `blurnet.spectrum.spectrum_features`
(layers `parameters_spectrum*`: the fall-off width, ring spacing and stripe direction that measure sigma, the
radius and the angle) and `cepstrum_features` (layers `parameters_cepstrum*`: the cepstrum of the central 96 px,
where a streak of length L is a dip at lag L along it, and that dip's place as numbers), then
Dense(256, relu) -> Dense(5) predicting `data_pipeline.parameters.PARAMETER_TARGETS` (Gaussian sigma,
motion length, the motion angle as `(cos 2θ, sin 2θ)`, defocus radius), each in pixels at the input's
own scale. Its own branches let `fit --freeze-classifier` train the head on an existing classifier: the
classifier's features need not measure the blur (on DenseNet121's pooled features alone a ridge
regression of the streak length reaches R² 0.2, and the classifier's 32 px spectrum has too few bins between
a 21 px streak's zeros). A model with the head returns
`{"probabilities": (batch, 4), "parameters": (batch, 5)}`; `class_probabilities` reads the
probabilities from either kind of model's output. Every layer of the head is named `parameters*`
(`is_head_layer`).

Loss (`parameter_loss`): each column is divided by its scale (`PARAMETER_SCALES`): the upper end of its
class's default training range for the sizes (3.5, 21, 7 px) and 2 for the angle's unit-circle point,
so that errors at the accuracy aimed for (sigma 0.12 px, length 0.8 px, angle 2.5 degrees: 0.087 on the
circle, radius 0.2 px) weigh alike (0.034, 0.038, 0.044, 0.029). A smaller angle scale lets the angle
take the shared layers' gradient: with 0.25 the streak length was not learned at all (R² about 0).
The Huber loss (delta 1) of the scaled error is averaged over the columns the sample's class trains
(`parameters.parameter_targets`' mask), then Keras averages it over the whole batch: sharp samples and
samples of unknown parameters (an empty mask) add 0 but count, so with a quarter of sharp samples the
head's loss is three quarters of its mean over the blurred ones. `fit` adds it to the classification loss
with weight `FitConfig.parameter_loss_weight` (1 by default: a 10 % error of a blurred sample costs 0.005,
a twentieth of a cross-entropy of 0.1, so the class head keeps the larger share of the gradient).
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from blurnet.spectrum import cepstrum_features, spectrum_features
from data_pipeline.classes import BlurRanges
from data_pipeline.parameters import PARAMETER_TARGETS, parameter_targets

#: Output names of a model with the parameter head.
PROBABILITIES, PARAMETERS = "probabilities", "parameters"
_RANGES = BlurRanges()
#: What each target column is divided by in the loss.
PARAMETER_SCALES = np.array([_RANGES.strength_range("gaussian")[1], _RANGES.strength_range("motion")[1], 2.0, 2.0,
                             _RANGES.strength_range("defocus")[1]], np.float32)


def add_parameter_head(images, features):
    """The head's output `(batch, 5)` float32 from the model's input `images` (its own spectral and cepstral
    branches) and the classifier's pooled `features` (Keras tensors)."""
    spectrum = spectrum_features(images, units=256, prefix=f"{PARAMETERS}_spectrum")
    cepstrum = cepstrum_features(images, units=256, prefix=f"{PARAMETERS}_cepstrum")
    x = layers.Concatenate(name=f"{PARAMETERS}_features")([features, spectrum, cepstrum])
    x = layers.Dense(256, activation="relu", name=f"{PARAMETERS}_hidden")(x)
    return layers.Dense(len(PARAMETER_TARGETS), dtype="float32", name=PARAMETERS)(x)


def is_head_layer(name: str) -> bool:
    """Whether the layer called `name` belongs to the parameter head (all that `--freeze-classifier` trains)."""
    return name == PARAMETERS or name.startswith(f"{PARAMETERS}_")


def has_parameter_head(model: keras.Model) -> bool:
    """Whether `model` returns the parameter head's output beside the probabilities."""
    return isinstance(model.output, dict) and PARAMETERS in model.output


def class_probabilities(outputs):
    """The probabilities of a model's output: the tensor itself, or its `probabilities` entry."""
    return outputs[PROBABILITIES] if isinstance(outputs, dict) else outputs


@keras.saving.register_keras_serializable(package="blurnet")
def parameter_loss(y_true, y_pred):
    """Masked, scaled Huber loss per sample; `y_true` is `(batch, 10)`: targets, then their mask."""
    n = len(PARAMETER_TARGETS)
    targets, mask = y_true[:, :n], y_true[:, n:]
    error = (ops.cast(y_pred, "float32") - targets) / ops.convert_to_tensor(PARAMETER_SCALES)
    huber = ops.where(ops.abs(error) <= 1.0, 0.5 * ops.square(error), ops.abs(error) - 0.5)
    return ops.sum(huber * mask, axis=-1) / ops.maximum(ops.sum(mask, axis=-1), 1.0)


def decode_parameters(raw) -> dict:
    """`{"sigma", "length", "angle", "radius"}`, `(batch,)` float32 tensors, from the head's `(batch, 5)` output:
    sizes clipped at 0 px, the angle in degrees in [0, 180) (`data_pipeline.parameters.angle_degrees`, in ops)."""
    raw = ops.cast(raw, "float32")
    angle = ops.mod(ops.arctan2(raw[:, 3], raw[:, 2]) * (90.0 / np.pi), 180.0)
    return {"sigma": ops.relu(raw[:, 0]), "length": ops.relu(raw[:, 1]), "angle": angle, "radius": ops.relu(raw[:, 4])}


def accuracy_key(model: keras.Model) -> str:
    """The name under which Keras logs the class accuracy of `model` (prefixed by the output with the head)."""
    return f"{PROBABILITIES}_accuracy" if has_parameter_head(model) else "accuracy"


def compile_arguments(model: keras.Model, parameter_loss_weight: float = 1.0, class_loss_weight: float = 1.0) -> dict:
    """`loss`, `loss_weights` and `metrics` for `model.compile`: cross-entropy (weighted `class_loss_weight`)
    and accuracy on the probabilities, plus `parameter_loss` weighted `parameter_loss_weight` with the head.
    `class_loss_weight=0` (the head trained alone) leaves the class loss logged but out of `loss`."""
    if not has_parameter_head(model):
        return {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
    return {
        "loss": {PROBABILITIES: "sparse_categorical_crossentropy", PARAMETERS: parameter_loss},
        "loss_weights": {PROBABILITIES: float(class_loss_weight), PARAMETERS: float(parameter_loss_weight)},
        "metrics": {PROBABILITIES: ["accuracy"]},
    }


def with_parameter_targets(dataset):
    """A `tf.data` dataset of `(images, labels, params)` batches as `(images, {"probabilities": labels,
    "parameters": targets and mask (batch, 10)})`, what a model with the head trains on."""
    import tensorflow as tf

    def pack(labels, params):
        targets, mask = parameter_targets(labels, params)
        return np.concatenate([targets, mask], axis=1)

    def split(images, labels, params):
        packed = tf.numpy_function(pack, [labels, params], tf.float32, stateful=False)
        packed.set_shape((labels.shape[0], 2 * len(PARAMETER_TARGETS)))
        return images, {PROBABILITIES: labels, PARAMETERS: packed}

    return dataset.map(split, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
