"""Writers of PyTorch weight files without torch, for the reader's tests.

The pickles are written opcode by opcode (protocol 2) exactly as `torch.save` lays out a state
dict, so the tests need neither torch nor safetensors installed.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile

import numpy as np

_STORAGE = {np.dtype("float32"): "FloatStorage", np.dtype("float16"): "HalfStorage",
            np.dtype("int64"): "LongStorage", np.dtype("float64"): "DoubleStorage"}
_SAFETENSORS = {np.dtype("float32"): "F32", np.dtype("float16"): "F16",
                np.dtype("int64"): "I64"}


def _str(text: str) -> bytes:
    data = text.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def _int(value: int) -> bytes:
    if 0 <= value < 2**31:
        return pickle.BININT + struct.pack("<i", value)
    data = value.to_bytes(16, "little", signed=True).rstrip(b"\0") or b"\0"
    return pickle.LONG1 + bytes([len(data)]) + data


def _tuple(items: list[bytes]) -> bytes:
    return pickle.MARK + b"".join(items) + pickle.TUPLE


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _state_dict_pickle(state: dict[str, np.ndarray], legacy: bool) -> tuple[bytes, list]:
    out = [pickle.PROTO + b"\x02", _global("collections", "OrderedDict"), pickle.EMPTY_TUPLE,
           pickle.REDUCE, pickle.MARK]
    storages = []
    for index, (name, value) in enumerate(state.items()):
        value = np.asarray(value)
        if not (value.flags.c_contiguous or value.flags.f_contiguous):
            value = value.copy()
        key = str(index)
        pid = [_str("storage"), _global("torch", _STORAGE[value.dtype]), _str(key), _str("cpu"),
               _int(value.size)]
        if legacy:
            pid.append(pickle.NONE)
        strides = [int(s // value.itemsize) for s in value.strides]
        out += [_str(name), _global("torch._utils", "_rebuild_tensor_v2"), pickle.MARK,
                _tuple(pid), pickle.BINPERSID, _int(0), _tuple([_int(n) for n in value.shape]),
                _tuple([_int(s) for s in strides]), pickle.NEWFALSE,
                _global("collections", "OrderedDict"), pickle.EMPTY_TUPLE, pickle.REDUCE,
                pickle.TUPLE, pickle.REDUCE]
        storages.append((key, value))
    out += [pickle.SETITEMS, pickle.STOP]
    return b"".join(out), storages


def write_zip(path, state: dict[str, np.ndarray]) -> None:
    """`torch.save` layout since torch 1.6: `archive/data.pkl` + `archive/data/<key>`."""
    data, storages = _state_dict_pickle(state, legacy=False)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data)
        archive.writestr("archive/byteorder", "little")
        for key, value in storages:
            archive.writestr(f"archive/data/{key}", value.tobytes(order="A"))
        archive.writestr("archive/version", "3\n")


def write_legacy(path, state: dict[str, np.ndarray]) -> None:
    """`torch.save(..., _use_new_zipfile_serialization=False)`: a stream of pickles + storages."""
    data, storages = _state_dict_pickle(state, legacy=True)
    stream = io.BytesIO()
    stream.write(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))
    stream.write(pickle.dumps(1001, protocol=2))
    stream.write(pickle.dumps({"protocol_version": 1001, "little_endian": True,
                               "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2))
    stream.write(data)
    stream.write(pickle.dumps([key for key, _ in storages], protocol=2))
    for _, value in storages:
        stream.write(struct.pack("<q", value.size))
        stream.write(value.tobytes(order="A"))
    with open(path, "wb") as handle:
        handle.write(stream.getvalue())


def write_safetensors(path, state: dict[str, np.ndarray]) -> None:
    """huggingface safetensors: u64 header length, JSON header, raw little-endian bytes."""
    header, chunks, offset = {}, [], 0
    for name, value in state.items():
        raw = np.ascontiguousarray(value).tobytes()
        header[name] = {"dtype": _SAFETENSORS[value.dtype], "shape": list(value.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


WRITERS = {"zip.pth": write_zip, "legacy.pth": write_legacy, "safetensors": write_safetensors}


# ------------------------------------------------------------------------------------------
# A Keras model's weights in PyTorch naming (the inverse of efficientnet/train/torch_names.py).

_PT_TOP = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "head_conv": "_conv_head",
           "head_bn": "_bn1", "head_dense": "_fc"}
_PT_BLOCK = {"expand_conv": "_expand_conv", "expand_bn": "_bn0", "dwconv": "_depthwise_conv",
             "dw_bn": "_bn1", "se_reduce": "_se_reduce", "se_expand": "_se_expand",
             "project_conv": "_project_conv", "project_bn": "_bn2"}
_TIMM_TOP = {"stem_conv": "conv_stem", "stem_bn": "bn1", "head_conv": "conv_head",
             "head_bn": "bn2", "head_dense": "classifier"}
_TIMM_BLOCK = {
    "ir": {"expand_conv": "conv_pw", "expand_bn": "bn1", "dwconv": "conv_dw", "dw_bn": "bn2",
           "project_conv": "conv_pwl", "project_bn": "bn3"},
    "ds": {"dwconv": "conv_dw", "dw_bn": "bn1", "project_conv": "conv_pw", "project_bn": "bn2"},
    "er": {"fused_conv": "conv_exp", "fused_bn": "bn1", "project_conv": "conv_pwl",
           "project_bn": "bn2"},
    "cn": {"project_conv": "conv", "project_bn": "bn1"},
}
_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
       "moving_variance": "running_var"}


def keras_to_torch(model, model_name: str, naming: str) -> dict[str, np.ndarray]:
    """The model's weights as a PyTorch state dict in `naming` (torch layouts, module order)."""
    import re

    from efficientnet.models import builder, get_spec

    stages = builder._Builder(get_spec(model_name), 0.0).stages()
    stage_of, index = [], 0  # flat block index -> (timm stage, block within the stage)
    while index < len(stages):
        repeats = stages[index].num_repeat
        stage_of += [(len({s for s, _ in stage_of}), j) for j in range(repeats)]
        index += repeats
    state = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        match = re.match(r"^blocks_(\d+)_(\w+)$", layer.name)
        if naming == "efficientnet_pytorch":
            module = (f"_blocks.{match.group(1)}.{_PT_BLOCK[match.group(2)]}" if match
                      else _PT_TOP[layer.name])
        elif match:
            args = stages[int(match.group(1))]
            kind = ("cn" if args.expand_ratio == 1 else "er") if args.conv_type == 1 else \
                ("ds" if args.expand_ratio == 1 else "ir")
            role = match.group(2)
            stage_index, block = stage_of[int(match.group(1))]
            local = {"se_reduce": "se.conv_reduce", "se_expand": "se.conv_expand"}.get(role) \
                or _TIMM_BLOCK[kind][role]
            module = f"blocks.{stage_index}.{block}.{local}"
        else:
            module = _TIMM_TOP[layer.name]
        for variable in layer.weights:
            short = variable.path.rsplit("/", 1)[-1]
            value = np.asarray(variable.numpy(), dtype=np.float32)
            if short in _BN:
                state[f"{module}.{_BN[short]}"] = value
                if short == "moving_variance":
                    state[f"{module}.num_batches_tracked"] = np.array(7, dtype=np.int64)
                continue
            if short == "kernel" and value.ndim == 4:
                value = value.transpose(2, 3, 0, 1) if type(layer).__name__ == \
                    "DepthwiseConv2D" else value.transpose(3, 2, 0, 1)
            elif short == "kernel":
                value = value.T
            state[f"{module}.{'weight' if short == 'kernel' else 'bias'}"] = \
                np.ascontiguousarray(value)
    return state
