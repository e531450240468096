"""TFRecord framing without TensorFlow, so the converter starts in a fraction of a second.

Each record is `uint64 length | uint32 masked CRC32C(length) | data | uint32 masked CRC32C(data)`
(little-endian), the format `tf.io.TFRecordWriter` writes; the CRC32C is `google-crc32c`'s C
implementation. Without that package, TensorFlow's writer is used (same bytes, slower start).
"""

from __future__ import annotations

import struct

try:
    import google_crc32c
except ImportError:  # pragma: no cover - the package is a dependency; kept for odd platforms
    google_crc32c = None

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
        if google_crc32c is None:
            import tensorflow as tf

            self._file, self._tf = None, tf.io.TFRecordWriter(path)
        else:
            self._file, self._tf = open(path, "wb"), None

    def write(self, record: bytes) -> None:
        if self._tf is not None:
            self._tf.write(record)
        else:
            self._file.write(frame(record))

    def close(self) -> None:
        if self._tf is not None:
            self._tf.close()
        else:
            self._file.flush()
            self._file.close()

    def __enter__(self) -> TFRecordWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
