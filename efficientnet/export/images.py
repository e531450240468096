"""Un-normalised eval images (float32 pixels in [0, 255]) for parity, calibration and inference.

Exported models take raw pixels and normalise inside, so everything here stops before
normalisation. Decoding, the eval centre crop and the resize are the data pipeline's own
`preprocess_for_eval`, the same function the `serving_bytes` signature runs, so the images fed to
an exported model can never be prepared differently from training-time evaluation.
"""

from __future__ import annotations

import glob
import os
import re

import numpy as np

from efficientnet.export.config import ExportError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def split_files(data_dir: str, split: str) -> list[str]:
    """Sorted `<data_dir>/<split>-*` TFRecord shards."""
    return sorted(glob.glob(os.path.join(data_dir, f"{split}-*")))


def has_split(data_dir: str, split: str) -> bool:
    return bool(split_files(data_dir, split))


def check_data_dir(data_dir: str) -> None:
    """Fails clearly unless `data_dir` holds `validation-*` TFRecords."""
    if not os.path.isdir(data_dir):
        raise ExportError(f"--data_dir {data_dir} does not exist.")
    if not has_split(data_dir, "validation"):
        raise ExportError(f"--data_dir {data_dir} has no validation-* TFRecord files.")


def label_offset(num_label_classes: int) -> int:
    """What the data pipeline subtracts from 1-based TFRecord labels (0 for 1001 classes)."""
    from efficientnet.data.config import DataConfig

    return DataConfig(num_label_classes=num_label_classes).label_offset


def read_split(
    data_dir: str,
    split: str,
    image_size: int,
    num_label_classes: int | None,
    limit: int,
    crop_padding: int = 32,
    resize_method: str = "bicubic",
) -> tuple[np.ndarray, np.ndarray | None]:
    """The first `limit` records of a split, in file order, as eval-preprocessed pixels.

    Returns (float32 [N, S, S, 3] pixels, int32 [N] 0-based labels or None when
    `num_label_classes` is None).
    """
    import tensorflow as tf

    from efficientnet.data import parse_record

    files = split_files(data_dir, split)
    if not files:
        raise ExportError(f"{data_dir} has no {split}-* TFRecord files.")

    def prepare(record):
        image_bytes, label = _bytes_and_label(parse_record(record))
        image = preprocess(image_bytes, image_size, crop_padding, resize_method)
        return image, tf.cast(label, tf.int32)

    dataset = tf.data.TFRecordDataset(files).take(limit).map(prepare).batch(64)
    pixels, labels = [], []
    try:
        for batch_pixels, batch_labels in dataset:
            pixels.append(batch_pixels.numpy())
            labels.append(batch_labels.numpy())
    except tf.errors.OpError as error:
        raise ExportError(f"Cannot read {split} records in {data_dir}: "
                          f"{error.message.splitlines()[0]}") from error
    if not pixels:
        return np.zeros((0, image_size, image_size, 3), np.float32), None
    pixels = np.concatenate(pixels)
    if num_label_classes is None:
        return pixels, None
    return pixels, np.concatenate(labels) - label_offset(num_label_classes)


def _bytes_and_label(parsed):
    # parse_record's result: (encoded image, label) or a dict of the record's fields.
    if not isinstance(parsed, dict):
        return parsed[0], parsed[1]
    image_key = next(k for k in ("image_bytes", "image/encoded", "encoded", "image") if k in parsed)
    label_key = next(k for k in ("label", "image/class/label") if k in parsed)
    return parsed[image_key], parsed[label_key]


def synthetic_images(count: int, image_size: int, seed: int = 0) -> np.ndarray:
    """Deterministic smooth colour images in [0, 255] (blobs, not white noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(count, 4, 4, 3)).astype(np.float32)
    index = np.linspace(0, 3, image_size)
    low, frac = np.floor(index).astype(int), index - np.floor(index)
    high = np.minimum(low + 1, 3)
    # Separable bilinear upsampling of the 4x4 grid, then a little pixel noise.
    row_weight, col_weight = frac[None, :, None, None], frac[None, None, :, None]
    rows = coarse[:, low] * (1 - row_weight) + coarse[:, high] * row_weight
    images = rows[:, :, low] * (1 - col_weight) + rows[:, :, high] * col_weight
    images += rng.normal(0, 8, size=images.shape)
    return np.ascontiguousarray(np.clip(images, 0, 255), dtype=np.float32)


def list_image_files(inputs: list[str]) -> list[str]:
    """Expands files and directories (their image files, sorted) into one list of paths."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            paths += sorted(
                os.path.join(item, name) for name in os.listdir(item)
                if name.lower().endswith(IMAGE_EXTENSIONS)
                and os.path.isfile(os.path.join(item, name))
            )
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise ExportError(f"Image {item} does not exist.")
    return paths


def read_image_files(
    paths: list[str], image_size: int, crop_padding: int = 32, resize_method: str = "bicubic",
    max_pixels: int | None = None,
) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Decodes each file; returns (pixels of the readable ones, their paths, [(path, why)]).
    Files whose header announces more than `max_pixels` pixels (default: the data pipeline's
    limit) are skipped before decoding."""
    import tensorflow as tf

    from efficientnet.data.preprocessing import MAX_IMAGE_PIXELS

    max_pixels = max_pixels or MAX_IMAGE_PIXELS

    pixels, readable, failures = [], [], []
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
            image = preprocess(tf.constant(data), image_size, crop_padding, resize_method,
                               max_pixels).numpy()
        except OSError as error:
            failures.append((path, error.strerror or str(error)))
            continue
        except tf.errors.OpError as error:
            failures.append((path, f"not a readable image ({_tf_error_text(error.message)})"))
            continue
        pixels.append(image)
        readable.append(path)
    shape = (len(pixels), image_size, image_size, 3)
    return (np.stack(pixels) if pixels else np.zeros(shape, np.float32)), readable, failures


def _tf_error_text(message: str) -> str:
    # "{{function_node ...}} Unknown image file format. ... [Op:DecodeImage] name: " -> the middle
    text = re.sub(r"\{\{.*?\}\}", "", message.splitlines()[0] if message else "")
    return re.sub(r"\s*\[Op:.*$", "", text).strip() or "decode failed"


def preprocess(image_bytes, image_size: int, crop_padding: int, resize_method: str,
               max_pixels: int | None = None):
    """Encoded image -> float32 [S, S, 3] pixels in [0, 255] (the data pipeline's eval path)."""
    import tensorflow as tf

    from efficientnet.data.preprocessing import MAX_IMAGE_PIXELS, preprocess_for_eval

    image = preprocess_for_eval(image_bytes, image_size, crop_padding=crop_padding,
                                resize_method=resize_method,
                                max_pixels=max_pixels or MAX_IMAGE_PIXELS)
    return tf.cast(image, tf.float32)
