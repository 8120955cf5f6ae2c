"""Model factory and transition-preserving fine-tuning for blurnet.

`create_model` builds: input float32 RGB 0..255 of any height and width ->
preprocessing (inside the model) -> backbone (include_top=False, called with
`training=False` when it starts from pretrained weights) -> global average
pooling -> [concatenated with the spectral branch's features, `spectrum=True`]
-> dropout -> Dense(4, softmax, float32) [beside it the parameter head on the
same features and spectral and cepstral branches of its own, `parameter_head=True`].
Nothing resizes: blur is a property of scale.

The backbones, their preprocessing and their transition layers come from the
`blurnet.backbones.BACKBONES` registry. DenseNet121 has four dense blocks
separated by three transition layers (`pool2_*`, `pool3_*`, `pool4_*`).
`set_trainable_from(model, "pool3")` makes the transition layer pool3 and
everything after it trainable (Keras names the dense blocks conv2..conv5, so:
pool3_*, conv4_*, pool4_*, conv5_*, bn), and everything before it frozen, so a
dense block is never half trainable. BatchNormalization layers stay frozen.
"""
from __future__ import annotations

import os

import keras
from keras import layers

from blurnet.backbones import DEFAULT_BACKBONE, UNFREEZE_CHOICES, get_backbone_spec
from blurnet.parameter_head import PARAMETERS, PROBABILITIES, add_parameter_head
from blurnet.spectrum import spectrum_features
from data_pipeline.classes import NUM_CLASSES


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights could not be downloaded; the message says how to work offline."""


@keras.saving.register_keras_serializable(package="blurnet")
class BackbonePreprocess(layers.Layer):
    """The backbone's own `keras.applications.<family>.preprocess_input`, as a layer."""

    def __init__(self, backbone: str = DEFAULT_BACKBONE, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone

    def call(self, inputs):
        return get_backbone_spec(self.backbone).preprocess_input(inputs)

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone}


@keras.saving.register_keras_serializable(package="blurnet")
class HighPassResidual(layers.Layer):
    """Appends the high-pass residual (image minus its 3x3 mean) as extra channels.

    Blur lives in the high frequencies that a stride-4 stem averages away; handing
    them to the first convolution directly makes them easy to use.
    """

    def call(self, inputs):
        local_mean = keras.ops.average_pool(inputs, pool_size=3, strides=1, padding="same")
        return keras.ops.concatenate([inputs, inputs - local_mean], axis=-1)


def create_backbone(backbone: str = DEFAULT_BACKBONE, weights: str | None = "imagenet", channels: int = 3) -> keras.Model:
    """A `keras.applications` backbone without its top, for inputs of any size.

    `weights`: "imagenet", None (random initialisation) or the path of a Keras
    weights file for that backbone (e.g. the ImageNet `..._notop.h5` file).
    Raises `WeightsUnavailableError` when ImageNet weights cannot be downloaded.
    """
    spec = get_backbone_spec(backbone)
    if weights not in (None, "imagenet") and not os.path.isfile(str(weights)):
        raise ValueError(f"weights must be 'imagenet', None or an existing weights file, got {weights!r}.")
    if weights is not None and channels != 3:
        raise ValueError(f"pretrained weights need 3 input channels, got {channels!r} (use weights=None).")
    fixed_shape = spec.pretrained_input_shape if weights is not None else None
    kwargs = {"include_top": False, "weights": weights, "input_shape": fixed_shape or (None, None, channels)}
    try:
        model = spec.constructor(**kwargs)
    except Exception as error:  # urllib raises several types; keras wraps them in Exception
        if weights == "imagenet" and ("fetch failure" in str(error) or "URL" in str(error) or isinstance(error, OSError)):
            raise WeightsUnavailableError(
                f"Could not download the ImageNet weights for {backbone} (no network?). Work offline with "
                f"--weights PATH, PATH being the Keras file {spec.imagenet_file} (put it in "
                f"~/.keras/models/ and 'imagenet' works too), or train from scratch with --weights none."
            ) from None
        raise
    if fixed_shape is not None:
        # Rebuild at any input size with the pretrained weights.
        flexible = spec.constructor(include_top=False, weights=None, input_shape=(None, None, 3))
        flexible.set_weights(model.get_weights())
        model = flexible
    return model


def create_model(
    backbone: str = DEFAULT_BACKBONE,
    weights: str | None = "imagenet",
    num_classes: int = NUM_CLASSES,
    dropout: float = 0.2,
    highpass: bool = False,
    spectrum: bool = False,
    scratch_bn_momentum: float = 0.99,
    parameter_head: bool = False,
) -> keras.Model:
    """The blurnet classifier: float32 RGB 0..255 `(batch, h, w, 3)` in, softmax `(batch, num_classes)` out.

    With pretrained weights the backbone runs with `training=False`, so its
    BatchNormalization layers always use their moving statistics. With
    `weights=None` (training from scratch) BatchNormalization learns normally:
    there are no statistics worth preserving, and frozen at their initial
    statistics (mean 0, variance 1) they would normalise nothing; their momentum
    is set to `scratch_bn_momentum` (MobileNetV2 ships 0.999, tuned for long
    ImageNet runs: after 1,300 steps from scratch its moving statistics still
    carried the first steps and validation accuracy sat at chance, 0.25, while
    training accuracy was 0.81). `highpass=True` (scratch only) adds the
    high-pass residual as three extra input channels. `spectrum=True` adds the
    spectral branch (`blurnet.spectrum`) beside the backbone: its features are
    concatenated with the backbone's pooled features before the classifier.
    `parameter_head=True` adds the blur-parameter regressor on the same features
    and spectral and cepstral branches of its own (`blurnet.parameter_head`); the model then returns a dict `{"probabilities",
    "parameters"}`.
    """
    get_backbone_spec(backbone)  # ValueError echoing an unknown name
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes!r}.")
    inputs = keras.Input(shape=(None, None, 3), dtype="float32", name="image")
    x = BackbonePreprocess(backbone, name="preprocess")(inputs)
    channels = 3
    if highpass:
        x = HighPassResidual(name="highpass")(x)
        channels += 3
    base = create_backbone(backbone, weights, channels=channels)
    pretrained = weights is not None
    if not pretrained:
        for layer in base.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = scratch_bn_momentum
    x = base(x, training=False) if pretrained else base(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if spectrum:
        x = layers.Concatenate(name="features")([x, spectrum_features(inputs)])
    features = x
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name=PROBABILITIES)(x)
    if parameter_head:
        outputs = {PROBABILITIES: outputs, PARAMETERS: add_parameter_head(inputs, features)}
    return keras.Model(inputs, outputs, name=f"blurnet_{backbone}")


def get_backbone(model: keras.Model) -> keras.Model:
    """The nested backbone model inside a blurnet model."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return layer
    raise ValueError(f"model {model.name!r} has no nested backbone model.")


def freeze_backbone(model: keras.Model) -> None:
    """Stage 1: the whole backbone frozen, only the head trains."""
    get_backbone(model).trainable = False


def freeze_all_but_parameter_head(model: keras.Model) -> list[str]:
    """Freeze every layer except the parameter head's (`blurnet.parameter_head.is_head_layer`); returns the names
    of its layers with weights.

    A `ValueError` for a model without the head. Frozen BatchNormalization layers run in inference mode, so
    the class probabilities stay exactly what they were.
    """
    from blurnet.parameter_head import PARAMETERS, is_head_layer

    if PARAMETERS not in [layer.name for layer in model.layers]:
        raise ValueError(f"model {model.name!r} has no parameter head (layer {PARAMETERS!r}) to train alone.")
    for layer in model.layers:
        layer.trainable = is_head_layer(layer.name)
    return [layer.name for layer in model.layers if layer.trainable and layer.weights]


def set_trainable_from(model: keras.Model, boundary: str, freeze_batchnorm: bool = True) -> list[str]:
    """Stage 2: make the backbone trainable from a transition boundary on.

    `boundary` is one of `UNFREEZE_CHOICES`: a transition layer of the backbone
    (`BackboneSpec.transitions`; DenseNet121's "pool2", "pool3", "pool4") or "all". Layers before the boundary stay frozen; BatchNormalization layers stay
    frozen when `freeze_batchnorm`. Returns the names of the trainable layers.
    """
    if boundary not in UNFREEZE_CHOICES:
        raise ValueError(f"unfreeze_from must be one of {UNFREEZE_CHOICES}, got {boundary!r}.")
    base = get_backbone(model)
    base.trainable = True
    names = [layer.name for layer in base.layers]
    if boundary == "all":
        start = 0
    else:
        matches = [i for i, n in enumerate(names) if n.startswith(boundary + "_")]
        if not matches:
            raise ValueError(f"backbone {base.name!r} has no transition layer {boundary!r}; use 'all'.")
        start = matches[0]
    trainable = []
    for i, layer in enumerate(base.layers):
        is_bn = isinstance(layer, layers.BatchNormalization)
        layer.trainable = i >= start and not (is_bn and freeze_batchnorm)
        if layer.trainable and layer.weights:
            trainable.append(layer.name)
    return trainable


def synchronize_batchnorm(model: keras.Model) -> int:
    """Make every BatchNormalization layer use global-batch statistics across replicas.

    Needed when BatchNormalization trains (from scratch) under a multi-replica
    `tf.distribute` strategy: otherwise each replica keeps its own moving
    statistics and the workers' weights drift apart. Returns the number of layers set.
    """
    count = 0
    for layer in get_backbone(model).layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.synchronized = True
            count += 1
    return count


def copy_shared_weights(source: keras.Model, target: keras.Model) -> list[str]:
    """Copy the weights of every layer of `target` that `source` has too (same name); returns the names
    of `target`'s layers with weights left as they were (e.g. a parameter head `source` lacks)."""
    by_name = {layer.name: layer for layer in source.layers}
    left = []
    for layer in target.layers:
        if not layer.weights:
            continue
        if layer.name in by_name:
            layer.set_weights(by_name[layer.name].get_weights())
        else:
            left.append(layer.name)
    return left


def create_training_variables(model: keras.Model, x, y, sample_weight=None) -> None:
    """Create a compiled model's optimizer slots and loss and metric variables now, eagerly on the example batch
    `(x, y, sample_weight)`, so that Keras traces its training step once.

    On the TensorFlow backend without a `tf.distribute` strategy in scope, Keras creates them inside the first
    trace of `fit`'s or `train_on_batch`'s step, and a `tf.function` that creates variables on its first trace is
    traced (and with `jit_compile`, compiled) a second time (`python benchmarks/fit_start.py` measures both). The
    metrics are reset afterwards: the example batch counts in no logged value.
    """
    y_pred = model(x, training=False)
    model.compute_loss(x, y, y_pred, sample_weight, training=False)
    model.compute_metrics(x, y, y_pred, sample_weight)
    model.reset_metrics()
    model.optimizer.build(model.trainable_variables)
