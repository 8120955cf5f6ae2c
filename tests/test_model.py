import keras
import numpy as np
import pytest

from blurnet.backbones import BACKBONES, get_backbone_spec
from blurnet.model import (
    BackbonePreprocess,
    WeightsUnavailableError,
    create_backbone,
    create_training_variables,
    create_model,
    freeze_backbone,
    get_backbone,
    set_trainable_from,
)


@pytest.fixture(scope="module")
def model():
    return create_model(weights=None)


def test_any_input_size_softmax_output(model):
    for shape in [(2, 32, 32, 3), (1, 48, 80, 3)]:
        out = np.asarray(model(np.random.default_rng(0).uniform(0, 255, shape).astype("float32")))
        assert out.shape == (shape[0], 4)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    assert model.input_shape == (None, None, None, 3)
    assert model.layers[-1].dtype_policy.name == "float32"
    assert not any("resiz" in layer.name.lower() for layer in model.layers)


def test_preprocessing_is_densenets_own(model):
    pre = model.get_layer("preprocess")
    x = np.full((1, 4, 4, 3), 255.0, "float32")
    expected = keras.applications.densenet.preprocess_input(x.copy())
    np.testing.assert_allclose(np.asarray(pre(x)), expected, rtol=1e-6)


# A white pixel after each backbone's preprocessing: torch (ImageNet mean/std), tf (-1..1), caffe (BGR minus mean).
WHITE_PREPROCESSED = {
    "densenet121": [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225],
    "mobilenetv2": [1.0, 1.0, 1.0],
    "resnet50": [255 - 103.939, 255 - 116.779, 255 - 123.68],
}


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_preprocess_layer_per_backbone_and_its_saved_form(backbone):
    layer = BackbonePreprocess(backbone)
    out = np.asarray(layer(np.full((1, 2, 2, 3), 255.0, "float32")))
    np.testing.assert_allclose(out[0, 0, 0], WHITE_PREPROCESSED[backbone], rtol=1e-5)
    # model.keras files store the layer under this name with this config: both must stay as they are
    config = keras.layers.serialize(layer)
    assert config["registered_name"] == "blurnet>BackbonePreprocess"
    assert config["config"]["backbone"] == backbone
    assert keras.layers.deserialize(config).backbone == backbone


def layer_flags(model):
    return {layer.name: layer.trainable for layer in get_backbone(model).layers}


@pytest.mark.parametrize("boundary", get_backbone_spec("densenet121").transitions + ("all",))
def test_unfreeze_at_transition_boundaries(model, boundary):
    set_trainable_from(model, boundary)
    flags = layer_flags(model)
    names = list(flags)
    start = 0 if boundary == "all" else names.index(f"{boundary}_bn")
    for i, name in enumerate(names):
        layer = get_backbone(model).get_layer(name)
        if isinstance(layer, keras.layers.BatchNormalization):
            assert not flags[name], name
        else:
            assert flags[name] == (i >= start), name
    # Never half a dense block: every block's layers are all trainable or all frozen.
    for block in ["conv2", "conv3", "conv4", "conv5"]:
        convs = {flags[n] for n in names if n.startswith(block + "_block") and n.endswith("_conv")}
        assert len(convs) == 1, (boundary, block)
    expected_blocks = {"pool2": ["conv3", "conv4", "conv5"], "pool3": ["conv4", "conv5"], "pool4": ["conv5"], "all": ["conv2", "conv3", "conv4", "conv5"]}
    assert [b for b in ["conv2", "conv3", "conv4", "conv5"] if flags[f"{b}_block1_1_conv"]] == expected_blocks[boundary]
    assert flags["conv1_conv"] == (boundary == "all")


def test_freeze_backbone_leaves_only_the_head(model):
    freeze_backbone(model)
    trainable = [w.path for w in model.trainable_weights]
    assert trainable and all(p.startswith("probabilities") for p in trainable)


@pytest.mark.slow
def test_batchnorm_statistics_do_not_move_during_finetuning(tmp_path):
    weights = tmp_path / "backbone.weights.h5"
    create_backbone(weights=None).save_weights(weights)
    model = create_model(weights=str(weights))
    set_trainable_from(model, "pool3")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    bn = get_backbone(model).get_layer("conv5_block16_1_bn")
    conv = get_backbone(model).get_layer("conv5_block16_1_conv")
    before_bn = [np.array(w) for w in bn.weights]
    before_conv = np.array(conv.kernel)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    create_training_variables(model, x, np.array([0, 1, 2, 3]))  # the step is traced once
    model.fit(x, np.array([0, 1, 2, 3]), epochs=2, batch_size=4, verbose=0)
    for a, w in zip(before_bn, bn.weights):
        np.testing.assert_array_equal(a, np.array(w))  # moving mean/var, gamma, beta untouched
    assert np.abs(before_conv - np.array(conv.kernel)).max() > 0  # while the convolutions learn


def test_bad_arguments_echo_the_value(model):
    with pytest.raises(ValueError, match="pool9"):
        set_trainable_from(model, "pool9")
    with pytest.raises(ValueError, match="vgg"):
        create_model("vgg", weights=None)
    with pytest.raises(ValueError, match="nope.h5"):
        create_model(weights="nope.h5")
    with pytest.raises(ValueError, match="6"):
        create_backbone(weights="imagenet", channels=6)


def test_highpass_adds_three_channels():
    m = create_model(weights=None, highpass=True)
    x = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    assert m(x).shape == (1, 4)
    hp = m.get_layer("highpass")(np.full((1, 8, 8, 3), 5.0, "float32"))
    assert hp.shape == (1, 8, 8, 6)
    np.testing.assert_allclose(np.asarray(hp)[..., 3:], 0.0, atol=1e-6)  # flat image: no high frequencies


def test_imagenet_offline_gives_a_clear_message(monkeypatch):
    import keras.src.utils.file_utils as file_utils

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure on https://example: None -- no network")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    monkeypatch.setattr(keras.utils, "get_file", no_network)
    monkeypatch.setenv("KERAS_HOME", "/nonexistent-blurnet-test")
    with pytest.raises(WeightsUnavailableError, match="densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        create_model(weights="imagenet")


def test_spectrum_model_takes_any_size_and_joins_the_branches():
    m = create_model(weights=None, spectrum=True)
    for shape in [(1, 32, 32, 3), (2, 40, 72, 3)]:
        out = np.asarray(m(np.random.default_rng(0).uniform(0, 255, shape).astype("float32")))
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    assert m.get_layer("features").output.shape == (None, 1024 + 128)  # DenseNet121 pooled + spectral branch
    assert get_backbone(m).name == "densenet121"
    assert m.get_layer("spectrum").output.shape == (None, 32, 32, 1)


def test_scratch_batchnorm_momentum():
    m = create_model("mobilenetv2", weights=None, spectrum=False)
    momenta = {layer.momentum for layer in get_backbone(m).layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {0.99}  # MobileNetV2 ships 0.999
