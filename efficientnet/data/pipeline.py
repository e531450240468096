"""`build_dataset`: TFRecord shards -> batches of (images, labels) for training, eval, calibration.

    files (sharded per input pipeline) -> parallel interleave -> [cache] -> shuffle -> decode + crop
    -> resize -> flip -> batch -> [augment] + normalise (spec mean/std) -> mixup/cutmix -> cast
    -> prefetch

Training batches are normalised by one XLA-compiled function per batch; with AutoAugment or
RandAugment the same compiled function first augments every image of it (each rounded to uint8 as
the augmentation loop takes it, each with its own seed). Eval normalises per image.

Training repeats forever, shuffles and drops the last partial batch; eval reads every record exactly
once, in a fixed order, keeping the last partial batch. Randomness is stateless, seeded per record from
`(config.seed, record index)`: with a seed and `deterministic=True` every run yields the same batches.
"""

from __future__ import annotations

import os
import random

import tensorflow as tf

from efficientnet.data.config import DataConfig
from efficientnet.data.preprocessing import (
    normalize_images,
    preprocess_for_eval,
    preprocess_for_train,
)

AUTOTUNE = tf.data.AUTOTUNE
READ_BUFFER_BYTES = 8 * 1024 * 1024
MAX_CYCLE_LENGTH = 16

_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature((), tf.string, default_value=""),
    "image/class/label": tf.io.FixedLenFeature((), tf.int64, default_value=-1),
}


def parse_record(serialized) -> dict:
    """A serialized tf.train.Example -> {"image_bytes": string, "label": int64 (1-based)}.

    Records without `image/encoded` or `image/class/label` fail with an error saying so.
    """
    parsed = tf.io.parse_single_example(serialized, _FEATURES)
    image_bytes = parsed["image/encoded"]
    label = parsed["image/class/label"]
    checks = [
        tf.debugging.assert_greater(
            tf.strings.length(image_bytes), 0,
            message="TFRecord record has no (or an empty) 'image/encoded' feature: not an image "
                    "record written by tfrecord_tools? Find it with `python -m tfrecord_tools "
                    "verify DIR`"),
        tf.debugging.assert_non_negative(
            label, message="TFRecord record has no 'image/class/label' feature"),
    ]
    with tf.control_dependencies(checks):
        return {"image_bytes": tf.identity(image_bytes), "label": tf.identity(label)}


def list_files(file_pattern: str) -> list[str]:
    """Sorted files matching `file_pattern`; ValueError naming the pattern when none do."""
    if not file_pattern:
        raise ValueError("No file pattern given (pass e.g. '/data/train-*', or use synthetic data)")
    if tf.io.gfile.isdir(file_pattern):
        raise ValueError(f"{file_pattern!r} is a directory: pass a pattern of TFRecord files such "
                         f"as {os.path.join(file_pattern, 'train-*')!r}")
    files = sorted(tf.io.gfile.glob(file_pattern))
    if not files:
        raise ValueError(f"No TFRecord files match {file_pattern!r} (convert images with "
                         "`python -m tfrecord_tools`)")
    return files


def _label_checks(label, config: DataConfig):
    """(assertion, label - offset): the shifted label must lie in [0, num_label_classes)."""
    shifted = label - config.label_offset
    in_range = tf.logical_and(shifted >= 0, shifted < config.num_label_classes)
    check = tf.debugging.Assert(in_range, [
        f"TFRecord label out of range for num_label_classes={config.num_label_classes} "
        f"(labels are 1-based and {config.label_offset} is subtracted; 1001 classes keep them "
        "as they are). Record label:", label])
    return check, shifted


def _element_seeds(seed: int | None) -> tf.data.Dataset:
    """[2] int32 seeds (base, index) for the records; a fresh random base when seed is None."""
    base = seed if seed is not None else random.SystemRandom().randrange(2**31 - 1)
    return tf.data.Dataset.counter().map(
        lambda index: tf.cast(tf.stack([tf.constant(base, tf.int64), index % (2**31 - 1)]),
                              tf.int32))


def synthetic_dataset(is_training: bool, batch_size: int, image_size: int,
                      config: DataConfig) -> tf.data.Dataset:
    """One random batch repeated forever (also for eval: take what you need), no files read."""
    seed = [config.seed or 0, 12345]
    images = tf.random.stateless_normal([batch_size, image_size, image_size, 3], seed)
    labels = tf.random.stateless_uniform([batch_size], seed, 0, config.num_label_classes,
                                         dtype=tf.int32)
    if is_training:
        labels = tf.one_hot(labels, config.num_label_classes, dtype=tf.float32)
    images = tf.cast(images, config.dtype)
    return tf.data.Dataset.from_tensors((images, labels)).repeat()


def build_dataset(file_pattern: str | None, is_training: bool, batch_size: int, spec,
                  config: DataConfig | None = None,
                  input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """Batches of (images [B, S, S, 3] in config.dtype, labels) from TFRecords of `file_pattern`.

    Training: repeats forever, shuffles, drops the remainder; labels are float32 one-hot
    [B, num_label_classes] (mixed when mixup/cutmix is on). Eval: every record once, in a fixed
    order, the last batch may be smaller; labels are int32 [B]. `batch_size` is the batch this dataset
    yields; `input_context` shards the files between input pipelines (workers).
    """
    config = config or DataConfig()
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    image_size = config.image_size or (spec.train_size if is_training else spec.eval_size)
    crop_padding = spec.crop_padding if config.crop_padding is None else config.crop_padding
    if config.use_synthetic_data:
        return synthetic_dataset(is_training, batch_size, image_size, config)

    files = list_files(file_pattern)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    shard_records = None  # (pipelines, id) when there are too few files to shard by file
    if input_context is not None and input_context.num_input_pipelines > 1:
        pipelines, pipeline_id = (input_context.num_input_pipelines,
                                  input_context.input_pipeline_id)
        if len(files) >= pipelines:
            dataset = dataset.shard(pipelines, pipeline_id)
            files = files[pipeline_id::pipelines]
        else:
            # Correct but slower: every pipeline reads every file and keeps its share of records.
            shard_records = (pipelines, pipeline_id)
    if is_training and not config.cache:
        dataset = dataset.shuffle(len(files), seed=config.seed).repeat()
    dataset = dataset.interleave(
        lambda path: tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER_BYTES),
        cycle_length=min(MAX_CYCLE_LENGTH, len(files)), num_parallel_calls=AUTOTUNE,
        deterministic=config.deterministic or not is_training)
    if shard_records is not None:
        dataset = dataset.shard(*shard_records)
    if config.cache:
        dataset = dataset.cache()
        if is_training:
            dataset = dataset.repeat()

    if is_training:
        dataset = dataset.shuffle(config.shuffle_buffer, seed=config.seed)
        dataset = tf.data.Dataset.zip((dataset, _element_seeds(config.seed)))
        dataset = dataset.map(_train_map_fn(image_size, crop_padding, config),
                              num_parallel_calls=AUTOTUNE, deterministic=config.deterministic)
        dataset = dataset.batch(batch_size, drop_remainder=True)
        batch_fn = (_augment_batch_fn(spec, config) if config.augment_name is not None
                    else _normalize_batch_fn(spec))
        dataset = dataset.map(batch_fn, num_parallel_calls=AUTOTUNE,
                              deterministic=config.deterministic)
        if config.mixup_alpha > 0 or config.cutmix_alpha > 0:
            from efficientnet.data import augment

            seeds = _element_seeds(None if config.seed is None else config.seed + 1)
            dataset = tf.data.Dataset.zip((dataset, seeds)).map(
                lambda batch, seed: augment.mix_batch(
                    batch[0], batch[1], seed, config.mixup_alpha, config.cutmix_alpha),
                num_parallel_calls=AUTOTUNE, deterministic=config.deterministic)
    else:
        dataset = dataset.map(_eval_map_fn(image_size, crop_padding, spec, config),
                              num_parallel_calls=AUTOTUNE, deterministic=True)
        dataset = dataset.batch(batch_size, drop_remainder=False)

    dtype = tf.as_dtype(config.dtype)
    dataset = dataset.map(lambda images, labels: (tf.cast(images, dtype), labels),
                          num_parallel_calls=AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.deterministic = bool(config.deterministic) or not is_training
    options.experimental_optimization.map_parallelization = True
    dataset = dataset.with_options(options)
    return dataset.prefetch(AUTOTUNE)


def _train_map_fn(image_size: int, crop_padding: int, config: DataConfig):
    """serialized, seed -> (float32 image in [0, 255], one-hot label), normalised after batching
    by `_normalize_batch_fn`; with augmentation on, (image, one-hot label, augmentation seed) for
    `_augment_batch_fn`."""

    def map_fn(serialized, seed):
        record = parse_record(serialized)
        image = preprocess_for_train(
            record["image_bytes"], image_size, config.resize_method,
            seed=tf.random.experimental.stateless_fold_in(seed, 0), crop_padding=crop_padding,
            area_range=(config.min_crop_area, 1.0))
        check, label = _label_checks(record["label"], config)
        with tf.control_dependencies([check]):
            one_hot = tf.one_hot(label, config.num_label_classes, dtype=tf.float32)
        if config.augment_name is not None:
            return image, one_hot, tf.random.experimental.stateless_fold_in(seed, 1)
        return image, one_hot

    return map_fn


def _normalize_batch_fn(spec):
    """(float32 images in [0, 255], labels) -> (normalised images, labels), one batch, compiled
    with XLA (one fused pass over the batch instead of per-image kernels)."""

    @tf.function(jit_compile=True, autograph=False)
    def map_fn(images, labels):
        return normalize_images(images, spec), labels

    return map_fn


def _augment_batch_fn(spec, config: DataConfig):
    """(float32 images in [0, 255], labels, seeds) -> (normalised augmented images, labels), one
    batch, in one XLA-compiled function (compiled once, when the first batch arrives).

    The images are rounded to uint8 (the ops' PIL arithmetic) here, each as the augmentation
    loop takes it (`augment.augment_batch`): per image in the map function, TensorFlow's round and
    cast kernels split each image over the intra-op pool and cost more than the augmentation's
    cheaper ops."""
    from efficientnet.data import augment

    # Built uncompiled: it is inlined into this compiled function, with the normalisation.
    augment_fn = augment.get_batch_augment_fn(config.augment_name, config.randaug_num_layers,
                                              config.randaug_magnitude, jit_compile=False)

    @tf.function(jit_compile=True, autograph=False)
    def map_fn(images, labels, seeds):
        images = augment_fn(images, seeds)
        return normalize_images(tf.cast(images, tf.float32), spec), labels

    return map_fn


def _eval_map_fn(image_size: int, crop_padding: int, spec, config: DataConfig):
    def map_fn(serialized):
        record = parse_record(serialized)
        image = preprocess_for_eval(record["image_bytes"], image_size, crop_padding,
                                    config.resize_method)
        image = normalize_images(image, spec)
        check, label = _label_checks(record["label"], config)
        with tf.control_dependencies([check]):
            label = tf.cast(label, tf.int32)
        return image, label

    return map_fn
