"""Turning training's run-time failures into one line that names the cause and the fix.

- A corrupt TFRecord met while training: TensorFlow's DataLossError names no file, so the
  shards of the failing split are scanned (TFRecord framing and CRC32C, no decoding) for the
  first bad one.
- A batch that cannot fit in memory: the default recipes are sized for accelerators, and on a
  small CPU host TensorFlow dies in its allocator without a message; `check_memory` estimates the
  activations of one training step first and refuses, naming --train_batch_size.
"""

from __future__ import annotations

import glob
import math
import os
import struct
import time

from efficientnet.cli import CommandError, first_line

SCAN_SECONDS = 60.0  # how long a failing run may spend looking for the corrupt shard


def _shard_problem(path: str) -> str | None:
    """Why the TFRecord file `path` is corrupt (truncated, bad CRC), or None when it reads."""
    from tfrecord_tools.tfrecord import masked_crc32c

    size = os.path.getsize(path)
    index = 0
    with open(path, "rb") as handle:
        while True:
            header = handle.read(12)
            if not header:
                return None
            if len(header) < 12:
                return f"record {index}: truncated header"
            length, crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != crc:
                return f"record {index}: corrupt length (CRC mismatch)"
            if handle.tell() + length + 4 > size:
                return f"record {index}: truncated ({length} bytes announced)"
            data = handle.read(length)
            (data_crc,) = struct.unpack("<I", handle.read(4))
            if masked_crc32c(data) != data_crc:
                return f"record {index}: corrupt data (CRC mismatch)"
            index += 1


def find_corrupt_shard(pattern: str, budget_s: float = SCAN_SECONDS) -> tuple[str, str] | None:
    """(shard path, what is wrong) of the first corrupt file matching `pattern`, or None (none
    found, or the scan ran out of its time budget)."""
    deadline = time.monotonic() + budget_s
    for path in sorted(glob.glob(pattern)):
        if time.monotonic() > deadline:
            return None
        try:
            problem = _shard_problem(path)
        except OSError as error:
            problem = f"unreadable ({error.strerror})"
        if problem:
            return path, problem
    return None


def data_loss_error(data_dir: str | None, error: Exception) -> CommandError:
    """The one-line error for a DataLossError while reading the shards of `data_dir`."""
    text = first_line(getattr(error, "message", str(error)))
    found = None
    if data_dir:
        for split in ("train", "validation"):
            found = find_corrupt_shard(os.path.join(data_dir, f"{split}-*"))
            if found:
                break
    if found:
        path, problem = found
        return CommandError(
            f"corrupt TFRecord shard {path} ({problem}): re-create it (re-run the conversion "
            "into a new directory) or move it out of --data_dir")
    return CommandError(
        f"corrupt or truncated TFRecord data in --data_dir {data_dir} ({text}): find the shard "
        f"with `python -m tfrecord_tools verify {data_dir}`")


def available_memory_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (Linux), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def activation_bytes_per_image(model) -> int:
    """Bytes one training image keeps alive for the backward pass: every layer's output (float32
    or the compute dtype), a lower bound of what TensorFlow allocates."""
    total = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        try:
            outputs = layer.output
        except (AttributeError, ValueError, RuntimeError):
            continue
        for output in outputs if isinstance(outputs, (list, tuple)) else [outputs]:
            shape = getattr(output, "shape", None)
            if shape is None or any(d is None for d in shape[1:]):
                continue
            itemsize = 2 if "16" in str(getattr(output, "dtype", "float32")) else 4
            total += math.prod(shape[1:]) * itemsize
    return total


def check_memory(model, batch_per_process: int, image_size: int, flag: str = "--train_batch_size",
                 available: int | None = None) -> None:
    """ConfigError (exit 2) when one training step's activations alone exceed the available
    memory (`available`: bytes, default MemAvailable)."""
    from efficientnet.config import ConfigError

    available = available_memory_bytes() if available is None else available
    per_image = activation_bytes_per_image(model)
    if not available or not per_image:
        return
    needed = per_image * batch_per_process
    if needed <= available:
        return
    fits = max(1, available // per_image)
    raise ConfigError(
        f"{flag}={batch_per_process} at {image_size} px needs at least "
        f"{needed / 2**30:.1f} GiB for the activations of one step, and this host has "
        f"{available / 2**30:.1f} GiB available: lower {flag} (at most about {fits} fits), "
        "or train on an accelerator")


def check_memory_for(trainer) -> None:
    """`check_memory` for a Trainer's model and per-process batch, on hosts without a GPU."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("TPU"):
        return
    per_process = max(1, trainer.config.train.train_batch_size // max(1, trainer.num_workers))
    check_memory(trainer.model, per_process, trainer.train_size)
