"""tf.train.Example serialisation without TensorFlow (worker processes stay light and fast).

The protobuf wire format of `Example{features: Features{feature: map<string, Feature>}}` is small
enough to write by hand; keys are written sorted, so the same record always gives the same bytes.
`tf.train.Example.FromString` reads the result (the tests check it field by field).
"""

from __future__ import annotations

import functools
import struct

_LEN = 2  # wire type of length-delimited fields


_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:  # tags, small lengths and labels: the common case
        return _ONE_BYTE[value]
    value &= (1 << 64) - 1  # negative int64 values are 10-byte two's complement varints
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | _LEN) + _varint(len(payload)) + payload


def _feature(value) -> bytes:
    """Feature oneof: bytes_list = 1, float_list = 2, int64_list = 3 (lists packed)."""
    # Single values (all of an image record but its boxes) skip the list handling below; single
    # bytes values never come here (serialize_example writes their headers, then the payload).
    if type(value) is str:
        return _field(1, _field(1, value.encode()))
    if type(value) is int:
        return _field(3, _field(1, _varint(value)))
    values = value if isinstance(value, list | tuple) else [value]
    if all(isinstance(v, bytes | str) for v in values) and values:
        items = b"".join(_field(1, v.encode() if isinstance(v, str) else v) for v in values)
        return _field(1, items)
    if any(isinstance(v, float) for v in values):
        packed = struct.pack(f"<{len(values)}f", *values)
        return _field(2, _field(1, packed) if values else b"")
    packed = b"".join(_varint(int(v)) for v in values)
    return _field(3, _field(1, packed) if values else b"")


def serialize_example(features: dict) -> bytes:
    """{name: bytes | str | int | float | list of one kind} -> serialized tf.train.Example.

    Lists of floats become float_list (give floats, not ints, for those); empty lists are int64.
    """
    parts = []
    size = 0
    for key, value in sorted(features.items()):
        if type(value) is bytes:
            header = _bytes_entry_header(key, len(value))
            parts += (header, value)  # the payload (the image) is copied once, by the join
            size += len(header) + len(value)
        else:
            entry = _small_entry(key, value) if type(value) in _SMALL_TYPES else _entry(key, value)
            parts.append(entry)
            size += len(entry)
    return b"".join([_varint((1 << 3) | _LEN), _varint(size), *parts])


def _bytes_entry_header(key: str, length: int) -> bytes:
    """Everything of the entry {key: bytes_list [payload]} before the payload of `length` bytes:
    entry = key, value: Feature{bytes_list: BytesList{value: payload}} (nested lengths summed)."""
    value_header = _varint((1 << 3) | _LEN) + _varint(length)  # BytesList.value
    list_length = len(value_header) + length
    list_header = _varint((1 << 3) | _LEN) + _varint(list_length)  # Feature.bytes_list
    feature_length = len(list_header) + list_length
    body_header = _key(key) + _varint((2 << 3) | _LEN) + _varint(feature_length)
    entry_length = len(body_header) + feature_length
    return (_varint((1 << 3) | _LEN) + _varint(entry_length) + body_header + list_header
            + value_header)


_SMALL_TYPES = (int, str)  # exact types: True is not 1 here


def _entry(key: str, value) -> bytes:
    """One map<string, Feature> entry."""
    return _field(1, _key(key) + _field(2, _feature(value)))


@functools.lru_cache(maxsize=4096)
def _small_entry(key: str, value: int | str) -> bytes:
    """Entries of records repeat (format, colorspace, sizes, labels, synsets): made once."""
    return _entry(key, value)


@functools.lru_cache(maxsize=256)
def _key(name: str) -> bytes:
    """The map entry's key field; records repeat the same few names."""
    return _field(1, name.encode())


def image_example(encoded: bytes, height: int, width: int, label: int, synset: str = "",
                  text: str = "", filename: str = "", image_format: str = "JPEG",
                  bboxes: list[tuple[float, float, float, float]] | None = None) -> bytes:
    """The TF-slim / tensorflow-tpu image record (docs/reference.md#tfrecord-layout); bboxes are
    (xmin, ymin, xmax, ymax) in [0, 1]."""
    features = {
        "image/encoded": encoded,
        "image/format": image_format,
        "image/height": height,
        "image/width": width,
        "image/colorspace": "RGB",
        "image/channels": 3,
        "image/class/label": label,
        "image/class/synset": synset,
        "image/class/text": text,
        "image/filename": filename,
    }
    if bboxes:
        for index, name in enumerate(("xmin", "ymin", "xmax", "ymax")):
            features[f"image/object/bbox/{name}"] = [float(box[index]) for box in bboxes]
        features["image/object/bbox/label"] = [label] * len(bboxes)
    return serialize_example(features)
