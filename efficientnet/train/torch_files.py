"""PyTorch weight files read with numpy alone: `.safetensors`, `.pth` (zip and legacy).

Why not `torch.load`: torch is a multi-gigabyte dependency for what is a few hundred lines of
file format, and `torch.load` unpickles, which can run arbitrary code from the file. Here:

- `.safetensors` is an 8-byte little-endian header length, a JSON header
  (`{name: {"dtype", "shape", "data_offsets"}}`) and raw bytes (huggingface/safetensors README).
- torch's zip serialization (torch >= 1.6) holds `<archive>/data.pkl`, a pickle whose persistent
  ids `('storage', type, key, location, numel)` name raw storages at `<archive>/data/<key>`.
- torch's legacy serialization is a stream of pickles: magic number, protocol version, system
  info, the object (same persistent ids, with two more fields), the list of storage keys, then
  each storage as an int64 element count and its raw bytes (torch/serialization.py, `_legacy_load`).

The object pickle is read by `_RestrictedUnpickler`, whose `find_class` admits only the handful
of globals a state dict needs (`torch._utils._rebuild_tensor_v2`, `torch.*Storage`,
`collections.OrderedDict`, ...) and refuses every other one before anything is called, so a
malicious file fails with `TorchFileError` and executes nothing.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile

import numpy as np


class TorchFileError(ValueError):
    """A PyTorch weight file that cannot be read safely, with the file named in the message."""


SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")  # not .ckpt: TF1 prefixes end so
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# torch storage class -> numpy dtype; bfloat16 is read as uint16 and widened to float32.
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": "bfloat16",
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_,
}


def _to_numpy(raw: bytes | memoryview, dtype) -> np.ndarray:
    if dtype == "bfloat16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32)
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))


class _Storage:
    """A storage referenced by a persistent id; its bytes are attached once they are read."""

    def __init__(self, dtype, key: str):
        self.dtype = dtype
        self.key = key
        self.array: np.ndarray | None = None


class _Tensor:
    """`_rebuild_tensor_v2(storage, offset, size, stride, ...)`, materialised after loading."""

    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), \
            tuple(stride)

    def numpy(self) -> np.ndarray:
        base = self.storage.array
        if base is None:
            raise TorchFileError(f"storage {self.storage.key} has no data")
        if not self.size:
            return np.array(base[self.offset])
        needed = self.offset + 1 + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if any(n == 0 for n in self.size):
            return np.zeros(self.size, dtype=base.dtype)
        if needed > base.size:
            raise TorchFileError(
                f"a tensor of shape {self.size} reaches past its storage ({base.size} elements)")
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:], shape=self.size,
            strides=tuple(s * base.itemsize for s in self.stride))
        return np.array(view)  # a contiguous copy, independent of the file buffer


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    return data


class _StorageType:
    def __init__(self, name: str):
        self.name = name


def _ordered_dict(*args):
    import collections

    return collections.OrderedDict(*args)


# The only globals a state dict needs; anything else in the file is refused.
_ALLOWED = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, handle, path: str, storage_for):
        super().__init__(handle)
        self.path = path
        self.storage_for = storage_for

    def find_class(self, module, name):
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise TorchFileError(
                f"{self.path}: refused to load, the pickle asks for {module}.{name}, which a "
                "PyTorch state dict never needs (only tensors and dicts are read; nothing in the "
                "file is executed)")
        return allowed

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise TorchFileError(f"{self.path}: unexpected persistent id {str(pid)[:80]}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise TorchFileError(f"{self.path}: unsupported storage type {storage_type!r}")
        return self.storage_for(key, _STORAGE_DTYPES[storage_type.name])


def _read_zip(path: str) -> dict:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            raise TorchFileError(f"{path}: a zip file without data.pkl, not a PyTorch checkpoint")
        prefix = pickles[0][: -len("data.pkl")]
        storages: dict[str, _Storage] = {}

        def storage_for(key, dtype):
            return storages.setdefault(key, _Storage(dtype, key))

        obj = _unpickle(io.BytesIO(archive.read(pickles[0])), path, storage_for)
        for key, storage in storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise TorchFileError(f"{path}: storage {member} is missing")
            storage.array = _to_numpy(archive.read(member), storage.dtype)
    return obj


def _read_legacy(path: str, data: bytes) -> dict:
    handle = io.BytesIO(data)

    def header_pickle():
        return _unpickle(handle, path, lambda key, dtype: None)

    magic = header_pickle()
    if magic != _LEGACY_MAGIC:
        raise TorchFileError(f"{path}: neither safetensors, a zip nor a legacy PyTorch file")
    header_pickle()  # protocol version
    header_pickle()  # system info: endianness, type sizes
    storages: dict[str, _Storage] = {}

    def storage_for(key, dtype):
        return storages.setdefault(key, _Storage(dtype, key))

    obj = _unpickle(handle, path, storage_for)
    keys = _unpickle(handle, path, lambda key, dtype: None)
    for key in keys:
        storage = storages.get(str(key))
        (count,) = struct.unpack("<q", handle.read(8) or b"\0" * 8)
        itemsize = 2 if storage is None or storage.dtype == "bfloat16" else \
            np.dtype(storage.dtype).itemsize
        raw = handle.read(count * itemsize)
        if len(raw) != count * itemsize:
            raise TorchFileError(f"{path}: truncated, storage {key} ends early")
        if storage is not None:
            storage.array = _to_numpy(raw, storage.dtype)
    return obj


def _unpickle(handle, path: str, storage_for):
    """One pickle from `handle` through the restricted unpickler."""
    try:
        return _RestrictedUnpickler(handle, path, storage_for).load()
    except TorchFileError:
        raise
    except Exception as error:
        raise TorchFileError(f"{path}: not a readable PyTorch pickle ({error})") from None


def _read_safetensors(path: str, data: bytes) -> dict[str, np.ndarray]:
    if len(data) < 8:
        raise TorchFileError(f"{path}: too short for a safetensors file")
    (length,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8:8 + length])
    except (ValueError, UnicodeDecodeError) as error:
        raise TorchFileError(f"{path}: bad safetensors header ({error})") from None
    body = memoryview(data)[8 + length:]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(entry.get("dtype"))
        if dtype is None:
            raise TorchFileError(f"{path}: tensor {name} has unsupported dtype {entry.get('dtype')}")
        start, end = entry["data_offsets"]
        if not 0 <= start <= end <= len(body):
            raise TorchFileError(f"{path}: tensor {name} lies outside the file")
        tensors[name] = _to_numpy(body[start:end], dtype).reshape(entry["shape"]).copy()
    return tensors


def _flatten(obj, path: str, prefer_ema: bool) -> dict[str, np.ndarray]:
    """A state dict (or a training checkpoint wrapping one) -> {name: numpy array}."""
    if isinstance(obj, dict) and not any(isinstance(v, _Tensor) for v in obj.values()):
        keys = ("state_dict_ema", "model_ema") if prefer_ema else ()
        for key in keys + ("state_dict", "model", "model_state_dict", "model_state"):
            if isinstance(obj.get(key), dict):
                return _flatten(obj[key], path, prefer_ema)
    if not isinstance(obj, dict):
        raise TorchFileError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    tensors = {}
    for name, value in obj.items():
        if isinstance(value, _Tensor):
            tensors[str(name)] = value.numpy()
    if not tensors:
        raise TorchFileError(f"{path}: no tensors found")
    return tensors


def read_state_dict(path: str, prefer_ema: bool = True) -> dict[str, np.ndarray]:
    """{tensor name: numpy array} of a `.safetensors` or `.pth` file (zip or legacy), in file order.

    A `module.` prefix (DataParallel) is dropped; a training checkpoint's `state_dict_ema` is
    preferred when `prefer_ema`. Raises `TorchFileError` naming the file on anything unreadable.
    """
    if not os.path.isfile(path):
        raise TorchFileError(f"{path}: no such file")
    with open(path, "rb") as handle:
        data = handle.read()
    if path.endswith(".safetensors"):
        tensors = _read_safetensors(path, data)
    elif data[:4] == b"PK\x03\x04":
        tensors = _flatten(_read_zip(path), path, prefer_ema)
    else:
        tensors = _flatten(_read_legacy(path, data), path, prefer_ema)
    if all(name.startswith("module.") for name in tensors):
        tensors = {name[len("module."):]: value for name, value in tensors.items()}
    return tensors


def is_torch_file(path: str) -> bool:
    """True for the file names this module reads."""
    return str(path).endswith(SUFFIXES)
