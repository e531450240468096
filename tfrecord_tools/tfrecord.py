"""TFRecord framing without TensorFlow, so the converter starts in a fraction of a second.

Each record is `uint64 length | uint32 masked CRC32C(length) | data | uint32 masked CRC32C(data)`
(little-endian), the format `tf.io.TFRecordWriter` writes; the CRC32C comes from `google-crc32c`
(a dependency: C code, or its own pure-Python fallback where no wheel exists).
"""

from __future__ import annotations

import struct

import google_crc32c

_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    """The CRC32C of `data`, rotated and offset as TFRecord stores it."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    """One record as it appears in a .tfrecord file."""
    length = struct.pack("<Q", len(record))
    return b"".join((length, struct.pack("<I", masked_crc32c(length)), record,
                     struct.pack("<I", masked_crc32c(record))))


class TFRecordWriter:
    """`with TFRecordWriter(path) as writer: writer.write(record)`, like tf.io.TFRecordWriter."""

    def __init__(self, path: str):
        self._file = open(path, "wb")

    def write(self, record: bytes) -> None:
        self._file.write(frame(record))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TFRecordWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
