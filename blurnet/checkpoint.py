"""Read an export's weights without TensorFlow: its SavedModel's checkpoint, and the Keras variable each entry is.

A SavedModel keeps its variables as a TensorFlow checkpoint: `variables/variables.index` (a sorted table,
LevelDB's format, mapping each checkpoint key to a `BundleEntryProto`: dtype, shape, shard, byte offset and
size) and `variables/variables.data-00000-of-00001` (the raw little-endian values). Both formats are
small and stable; reading them here lets `python -m blurnet.train_keras --init-from <export>` start from
a blurnet export on a machine with Keras on JAX or PyTorch and no TensorFlow.

The keys of a Keras model's variables are its attribute paths (`model/_operations/11/_kernel/
.ATTRIBUTES/VARIABLE_VALUE`: the model's 12th operation's `_kernel`), which `keras_variable` follows
on a model of the same architecture, with any backend.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_FOOTER_SIZE = 48  # two block handles padded to 40 bytes, then the 8-byte magic number
_TABLE_MAGIC = 0xDB4775248B80FB57
_BLOCK_TRAILER = 5  # compression type (1 byte) and CRC32C (4 bytes) after each block
# TensorFlow DataType enum values this reader knows (tensorflow/core/framework/types.proto).
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64,
           10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64}
_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


class CheckpointFormatError(ValueError):
    """A checkpoint this reader cannot read; the message names the file and why."""


def _crc_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1).astype(np.uint32)
    return table


_CRC_TABLE = _crc_table()  # CRC-32C (Castagnoli), reflected, as TensorFlow and LevelDB checksum their data
_CRC_LIST = _CRC_TABLE.tolist()


def _crc_bytes(register: int, data) -> int:
    for byte in data:
        register = _CRC_LIST[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


def crc32c(data) -> int:
    """CRC-32C of `data` (bytes or a uint8 array), with NumPy: the bundled checkpoint (634 tensors, 34 MB) in about 1 s.

    Long data is cut into about sqrt(n) rows of equal length `L`, checksummed side by side from a zero register;
    the CRC register is affine in its start, so the rows' registers are folded in order: the register so far moved
    over `L` zero bytes (a linear map, four 256-entry tables), XOR the next row's register.
    """
    data = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else np.asarray(data).reshape(-1)
    if len(data) < 8192:
        return _crc_bytes(0xFFFFFFFF, data.tolist()) ^ 0xFFFFFFFF
    length = int(np.sqrt(len(data)))
    rows = data[: len(data) // length * length].reshape(-1, length)
    registers = np.zeros(len(rows), np.uint32)
    shifted = np.arange(256, dtype=np.uint32)[None, :] << (8 * np.arange(4, dtype=np.uint32)[:, None])
    for column in range(length):
        registers = _CRC_TABLE[(registers ^ rows[:, column]) & 0xFF] ^ (registers >> 8)
        shifted = _CRC_TABLE[shifted & 0xFF] ^ (shifted >> 8)
    t0, t1, t2, t3 = shifted.tolist()
    register = 0xFFFFFFFF
    for row in registers.tolist():
        register = t0[register & 255] ^ t1[(register >> 8) & 255] ^ t2[(register >> 16) & 255] ^ t3[register >> 24] ^ row
    return _crc_bytes(register, data[rows.size :].tolist()) ^ 0xFFFFFFFF


def masked_crc32c(data) -> int:
    """The CRC-32C of `data` masked as TensorFlow and LevelDB store it (rotated by 15 bits, plus a constant)."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(data: bytes, position: int) -> tuple[int, int]:
    """A protobuf / LevelDB base-128 varint at `position`: (value, position after it)."""
    value, shift = 0, 0
    while True:
        if position >= len(data):
            raise CheckpointFormatError("truncated varint")
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position += 1
        if byte < 0x80:
            return value, position
        shift += 7


def _fields(message: bytes):
    """(field number, wire type, value) of each field of a serialised protobuf message; a length-delimited
    value is its bytes, a varint its integer, a fixed32/fixed64 its raw bytes."""
    position = 0
    while position < len(message):
        tag, position = _varint(message, position)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, position = _varint(message, position)
        elif wire == 2:
            length, position = _varint(message, position)
            value, position = message[position : position + length], position + length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, position = message[position : position + width], position + width
        else:
            raise CheckpointFormatError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _block_entries(block: bytes):
    """(key, value) of each entry of a LevelDB table block (keys prefix-compressed against the previous one)."""
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end, position, key = len(block) - 4 - 4 * restarts, 0, b""
    while position < end:
        shared, position = _varint(block, position)
        unshared, position = _varint(block, position)
        length, position = _varint(block, position)
        key = key[:shared] + block[position : position + unshared]
        position += unshared
        yield key, block[position : position + length]
        position += length


def _read_block(index: bytes, handle: bytes, where: str) -> bytes:
    offset, position = _varint(handle, 0)
    size, _ = _varint(handle, position)
    if offset + size + _BLOCK_TRAILER > len(index):
        raise CheckpointFormatError(f"{where}: a block runs past the end of the file (truncated?)")
    if index[offset + size] != 0:
        raise CheckpointFormatError(f"{where}: compressed table blocks are not supported (type {index[offset + size]})")
    if masked_crc32c(index[offset : offset + size + 1]) != struct.unpack_from("<I", index, offset + size + 1)[0]:
        raise CheckpointFormatError(f"{where}: a block of the index fails its checksum (the file is corrupt)")
    return index[offset : offset + size]


def _entry(message: bytes) -> dict:
    """The fields of a `BundleEntryProto` that locate a whole tensor: dtype, shape, shard, offset, size, and its
    checksum `crc32c` when stored."""
    entry = {"dtype": 0, "shape": [], "shard": 0, "offset": 0, "size": 0, "sliced": False}  # proto3 defaults
    for number, wire, value in _fields(message):
        if number in (1, 3, 4, 5) and wire != 0:  # varints all, in a BundleEntryProto that is not corrupt
            raise CheckpointFormatError(f"field {number} of a tensor entry has wire type {wire}, not a varint")
        if number == 1:
            entry["dtype"] = value
        elif number == 2:  # TensorShapeProto: repeated Dim dim = 2 { int64 size = 1 }
            for dim_number, _, dim in _fields(value):
                if dim_number == 2:
                    entry["shape"].append(next((v for n, _, v in _fields(dim) if n == 1), 0))
        elif number in (3, 4, 5):
            entry[{3: "shard", 4: "offset", 5: "size"}[number]] = value
        elif number == 6 and wire == 5:  # fixed32 crc32c: the masked CRC-32C of the tensor's bytes
            entry["crc32c"] = struct.unpack("<I", value)[0]
        elif number == 7:
            entry["sliced"] = True
    return entry


def read_index(prefix: str | Path) -> dict[str, dict]:
    """Every tensor of the checkpoint at `prefix` (`<export>/variables/variables`): key -> dtype (TF enum),
    shape, shard, offset, size, sliced. `CheckpointFormatError` naming the file for anything it cannot read."""
    return _read_table(prefix)[1]


def _read_table(prefix: str | Path) -> tuple[int, dict[str, dict]]:
    """(number of data shards from the bundle header, `read_index`'s entries)."""
    path = Path(f"{prefix}.index")
    try:
        index = path.read_bytes()
    except OSError as error:
        raise CheckpointFormatError(f"{path}: cannot read the checkpoint index ({error.strerror or error})") from None
    try:
        return _parse_table(index, path)
    except CheckpointFormatError as error:
        message = str(error)
        raise CheckpointFormatError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    except (struct.error, IndexError, TypeError, ValueError, OverflowError) as error:  # bytes no table holds
        raise CheckpointFormatError(f"{path}: corrupt checkpoint index ({type(error).__name__}: {error})") from None


def _parse_table(index: bytes, path: Path) -> tuple[int, dict[str, dict]]:
    """`_read_table` on the index file's bytes."""
    if len(index) < _FOOTER_SIZE or struct.unpack_from("<Q", index, len(index) - 8)[0] != _TABLE_MAGIC:
        raise CheckpointFormatError(f"{path}: not a TensorFlow checkpoint index (no table footer)")
    footer = index[-_FOOTER_SIZE:]
    _, position = _varint(footer, 0)  # the metaindex handle (unused), then the index block's
    _, position = _varint(footer, position)
    index_block = _read_block(index, footer[position:], str(path))
    entries, shards = {}, 1
    for _, handle in _block_entries(index_block):
        for key, value in _block_entries(_read_block(index, handle, str(path))):
            if key:
                entries[key.decode("utf-8", "replace")] = _entry(value)
            else:  # the empty key holds the bundle header: BundleHeaderProto { int32 num_shards = 1; ... }
                shards = next((v for n, w, v in _fields(value) if n == 1 and w == 0), 1)
    return shards, entries


def read_tensors(prefix: str | Path) -> dict[str, np.ndarray]:
    """Every whole tensor of the checkpoint at `prefix` as a numpy array (strings and sliced tensors left out)."""
    return _read_arrays(prefix, *_read_table(prefix))


def _read_arrays(prefix: str | Path, count_of_shards: int, entries: dict[str, dict]) -> dict[str, np.ndarray]:
    """`read_tensors` for the entries of an index already read (`_read_table`)."""
    arrays, shards = {}, {}
    for key, entry in entries.items():
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None or entry["sliced"]:
            continue
        if entry["shard"] not in shards:
            shard = Path(f"{prefix}.data-{entry['shard']:05d}-of-{count_of_shards:05d}")
            try:
                shards[entry["shard"]] = np.memmap(shard, dtype=np.uint8, mode="r")
            except (OSError, ValueError) as error:  # missing, unreadable or empty
                raise CheckpointFormatError(f"{shard}: cannot read the checkpoint's data ({error})") from None
        data = shards[entry["shard"]]
        count = int(np.prod(entry["shape"], dtype=np.int64))
        if entry["size"] != count * np.dtype(dtype).itemsize or entry["offset"] + entry["size"] > len(data):
            raise CheckpointFormatError(f"{prefix}: tensor {key!r} does not fit its data file (truncated?)")
        raw = data[entry["offset"] : entry["offset"] + entry["size"]]
        if "crc32c" in entry and masked_crc32c(raw) != entry["crc32c"]:
            raise CheckpointFormatError(f"{prefix}: tensor {key!r} fails its checksum (the data file is corrupt)")
        arrays[key] = np.frombuffer(raw.tobytes(), dtype=np.dtype(dtype).newbyteorder("<")).reshape(entry["shape"])
    return arrays


def keras_variable(model, key: str):
    """The variable of `model` that the checkpoint key `model/<attribute path>/.ATTRIBUTES/VARIABLE_VALUE` names,
    following attributes and list indices; `KeyError` naming the key when the path does not exist."""
    if not key.startswith("model/") or not key.endswith(_VALUE_SUFFIX):
        raise KeyError(f"{key!r} is not a model variable's checkpoint key")
    target = model
    for part in key[len("model/") : -len(_VALUE_SUFFIX)].split("/"):
        if part.isdigit() and not hasattr(target, part):
            try:
                target = target[int(part)]
                continue
            except (TypeError, IndexError, KeyError):
                raise KeyError(f"{key!r}: no item {part} in {type(target).__name__}") from None
        if not hasattr(target, part):
            raise KeyError(f"{key!r}: {type(target).__name__} has no attribute {part!r}")
        target = getattr(target, part)
    return target


def load_export_variables(model, export: str | Path) -> int:
    """Assign every variable of `model` from the SavedModel checkpoint of the blurnet `export` folder; returns
    how many. `ValueError` when the checkpoint and the model do not match one to one, with matching shapes."""
    prefix = Path(export) / "variables" / "variables"
    count_of_shards, entries = _read_table(prefix)
    entries = {k: e for k, e in entries.items() if k.startswith("model/")}
    arrays = _read_arrays(prefix, count_of_shards, entries)
    unread = {k: e["dtype"] for k, e in entries.items() if k not in arrays}
    if unread:
        key, dtype = next(iter(unread.items()))
        raise CheckpointFormatError(f"{prefix}: {len(unread)} weights are stored in a way this reader does not take "
                                    f"(sliced, or TensorFlow dtype {dtype}), e.g. {key!r}.")
    assigned = {}
    for key, array in arrays.items():
        try:
            variable = keras_variable(model, key)
        except KeyError as error:
            raise ValueError(f"{str(export)!r} holds a weight the model lacks: {error.args[0]}") from None
        if tuple(variable.shape) != array.shape:
            raise ValueError(f"{str(export)!r}: {key!r} is {array.shape}, the model's weight {tuple(variable.shape)}.")
        assigned[id(variable)] = (variable, array)
    missing = [v.path for v in model.weights if id(v) not in assigned]
    if missing or len(assigned) != len(arrays):
        raise ValueError(f"{str(export)!r} does not hold every weight of the model (missing: {', '.join(missing[:3])}"
                         f"{' ...' if len(missing) > 3 else ''}; {len(arrays)} weights in the checkpoint, "
                         f"{len(model.weights)} in the model).")
    for variable, array in assigned.values():
        variable.assign(array)
    return len(assigned)
