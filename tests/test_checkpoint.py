"""`blurnet.checkpoint`: an export's SavedModel variables read without TensorFlow, as TensorFlow reads them."""
import numpy as np
import pytest

from blurnet import checkpoint, train_keras
from blurnet.model import create_model


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A model with the parameter head, its variables written as a SavedModel writes them, and a twin with other weights."""
    import keras

    tf = pytest.importorskip("tensorflow")  # writing the checkpoint needs it; reading it does not
    keras.utils.set_random_seed(3)
    model = create_model("mobilenetv2", weights=None, spectrum=True, parameter_head=True)
    folder = tmp_path_factory.mktemp("export")
    tf.train.Checkpoint(model=model).write(str(folder / "variables" / "variables"))
    keras.utils.set_random_seed(4)
    return model, folder, create_model("mobilenetv2", weights=None, spectrum=True, parameter_head=True)


def test_every_tensor_reads_as_tensorflow_reads_it(written):
    import tensorflow as tf

    _, folder, _ = written
    prefix = str(folder / "variables" / "variables")
    arrays, reader = checkpoint.read_tensors(prefix), tf.train.load_checkpoint(prefix)
    expected = {k for k in reader.get_variable_to_shape_map() if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    assert set(arrays) == expected and len(arrays) > 100
    for key, array in arrays.items():
        assert array.dtype == reader.get_tensor(key).dtype and np.array_equal(array, reader.get_tensor(key)), key
    index = checkpoint.read_index(prefix)
    assert sum(e["size"] for e in index.values() if e["dtype"] == 1) == sum(a.nbytes for a in arrays.values() if a.dtype == np.float32)


def test_the_variables_go_to_the_same_weights_of_a_twin_model(written):
    model, folder, twin = written
    assert not all(np.array_equal(a, b) for a, b in zip(model.get_weights(), twin.get_weights()))
    assert checkpoint.load_export_variables(twin, folder) == len(model.weights)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), twin.get_weights()))
    tiles = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 3)).astype(np.float32)
    for a, b in zip(model(tiles), twin(tiles)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    key = "model/_operations/1/_kernel/.ATTRIBUTES/VARIABLE_VALUE"
    with pytest.raises(KeyError, match="no attribute 'nowhere'"):
        checkpoint.keras_variable(model, "model/nowhere/.ATTRIBUTES/VARIABLE_VALUE")
    with pytest.raises(KeyError, match="not a model variable"):
        checkpoint.keras_variable(model, key.replace("VARIABLE_VALUE", "OTHER"))


def test_train_keras_starts_from_an_export_folder(written):
    model, folder, _ = written
    fresh = create_model("mobilenetv2", weights=None, spectrum=True, parameter_head=True)
    train_keras.load_starting_weights(fresh, folder)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), fresh.get_weights()))


def test_another_architecture_and_damaged_files_are_refused_by_name(written, tmp_path):
    _, folder, _ = written
    without_head = create_model("mobilenetv2", weights=None, spectrum=True, parameter_head=False)
    with pytest.raises(ValueError, match="holds a weight the model lacks"):
        checkpoint.load_export_variables(without_head, folder)
    damaged = tmp_path / "variables"
    damaged.mkdir()
    index = (folder / "variables" / "variables.index").read_bytes()
    (damaged / "variables.index").write_bytes(index[: len(index) // 2])
    with pytest.raises(checkpoint.CheckpointFormatError, match="variables.index: not a TensorFlow checkpoint index"):
        checkpoint.read_index(damaged / "variables")
    (damaged / "variables.index").write_bytes(index)
    with pytest.raises(checkpoint.CheckpointFormatError, match="variables.data-00000-of-00001: cannot read"):
        checkpoint.read_tensors(damaged / "variables")  # no data file beside the index
    data = next((folder / "variables").glob("variables.data-*"))
    (damaged / data.name).write_bytes(data.read_bytes()[:1000])
    with pytest.raises(checkpoint.CheckpointFormatError, match="does not fit its data file"):
        checkpoint.read_tensors(damaged / "variables")
    with pytest.raises(checkpoint.CheckpointFormatError, match="cannot read the checkpoint index"):
        checkpoint.read_index(tmp_path / "missing" / "variables")
    with pytest.raises(ValueError, match="none of weights.json, model.keras"):
        train_keras.load_starting_weights(without_head, tmp_path / "missing")


def test_crc32c_matches_the_standard_check_value_and_a_byte_by_byte_loop():
    assert checkpoint.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert checkpoint.crc32c(b"") == 0
    data = np.random.default_rng(0).integers(0, 256, 100_003, dtype=np.uint8)  # long: rows folded, and a tail
    register = 0xFFFFFFFF
    for byte in data.tolist():
        register = int(checkpoint._CRC_TABLE[(register ^ byte) & 0xFF]) ^ (register >> 8)
    assert checkpoint.crc32c(data) == register ^ 0xFFFFFFFF == checkpoint.crc32c(data.tobytes())


def test_a_flipped_byte_in_the_weights_or_the_index_is_refused(written, tmp_path):
    _, folder, _ = written
    source = folder / "variables"
    index = (source / "variables.index").read_bytes()
    data_file = next(source.glob("variables.data-*"))
    data = bytearray(data_file.read_bytes())
    key, entry = max((item for item in checkpoint.read_index(source / "variables").items() if item[1]["dtype"] == 1),
                     key=lambda item: item[1]["size"])  # the largest float32 tensor
    assert "crc32c" in entry and entry["size"] > 8192
    damaged = tmp_path / "variables"
    damaged.mkdir()
    (damaged / "variables.index").write_bytes(index)
    data[entry["offset"] + 5] ^= 0x10  # one bit of one weight: it would load silently without the checksums
    (damaged / data_file.name).write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointFormatError, match=f"tensor {key!r} fails its checksum"):
        checkpoint.read_tensors(damaged / "variables")
    flipped = bytearray(index)
    flipped[len(index) // 3] ^= 0x01  # inside a block of the index
    (damaged / "variables.index").write_bytes(bytes(flipped))
    with pytest.raises(checkpoint.CheckpointFormatError, match=r"variables.index: .*(checksum|corrupt)"):
        checkpoint.read_index(damaged / "variables")
