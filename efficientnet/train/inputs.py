"""Datasets for the training engine: `efficientnet.data.build_dataset`, distributed per replica.

A dataset function here has the signature `fn(input_context) -> tf.data.Dataset` and yields
per-replica batches; `strategy.distribute_datasets_from_function` calls it once per input pipeline
(worker), so file sharding follows `input_context`. Tests may pass their own functions of the same
shape to the engine.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf

from efficientnet.train.config import ConfigError, RunConfig


def data_config(config: RunConfig, image_size: int):
    """The `efficientnet.data.config.DataConfig` for this run: every setting the two configs share
    (by field name, so a new shared flag cannot be left behind), this run's image size and the
    compute dtype of its precision policy."""
    from efficientnet.data.config import DataConfig

    shared = ({f.name for f in dataclasses.fields(DataConfig)}
              & {f.name for f in dataclasses.fields(RunConfig)})
    values = {name: getattr(config, name) for name in shared}
    values["image_size"] = image_size
    values["dtype"] = "bfloat16" if config.precision == "mixed_bfloat16" else "float32"
    # None means "the data module's default": leave those fields out.
    return DataConfig(**{k: v for k, v in values.items() if v is not None})


def file_pattern(config: RunConfig, is_training: bool) -> str | None:
    if config.use_synthetic_data:
        return None
    return os.path.join(config.data_dir, "train-*" if is_training else "validation-*")


def check_data_dir(config: RunConfig, need_train: bool, need_eval: bool) -> None:
    """Raises ConfigError when the TFRecords the run needs are not in --data_dir."""
    if config.use_synthetic_data:
        return
    if not tf.io.gfile.isdir(config.data_dir):
        raise ConfigError(f"--data_dir {config.data_dir!r} does not exist or is not a directory")
    for needed, split in ((need_train, True), (need_eval, False)):
        pattern = file_pattern(config, split)
        if needed and not tf.io.gfile.glob(pattern):
            raise ConfigError(
                f"No TFRecords match {pattern!r}: --data_dir must hold train-* and validation-* "
                "shards (convert images with `python -m tfrecord_tools`)")


def make_dataset_fn(config: RunConfig, spec, is_training: bool, global_batch_size: int,
                    image_size: int, skip_batches: int = 0):
    """fn(input_context) -> per-replica dataset from efficientnet.data.build_dataset.

    `skip_batches` per replica are dropped from the start (deterministic resume: the same
    pipeline, positioned where the interrupted run stopped).
    """
    from efficientnet.data import build_dataset

    pattern = file_pattern(config, is_training)
    dconfig = data_config(config, image_size)

    def dataset_fn(input_context: tf.distribute.InputContext | None = None):
        if input_context is not None:
            batch = input_context.get_per_replica_batch_size(global_batch_size)
        else:
            batch = global_batch_size
        dataset = build_dataset(pattern, is_training, batch, spec, dconfig,
                                input_context=input_context)
        if skip_batches:
            dataset = dataset.skip(skip_batches)
        return dataset

    return dataset_fn


def synthetic_dataset_fn(is_training: bool, global_batch_size: int, image_size: int,
                         num_classes: int, num_batches: int | None = None, seed: int = 0):
    """Random images and labels (a stand-in used when efficientnet.data is unavailable)."""

    def dataset_fn(input_context: tf.distribute.InputContext | None = None):
        batch = (input_context.get_per_replica_batch_size(global_batch_size)
                 if input_context is not None else global_batch_size)
        generator = tf.random.Generator.from_seed(seed)
        images = generator.normal((batch, image_size, image_size, 3))
        labels = generator.uniform((batch,), 0, num_classes, dtype=tf.int32)
        if is_training:
            labels = tf.one_hot(labels, num_classes)
        dataset = tf.data.Dataset.from_tensors((images, labels))
        return dataset.repeat() if num_batches is None else dataset.repeat(num_batches)

    return dataset_fn


def data_module_available() -> bool:
    try:
        from efficientnet.data import build_dataset  # noqa: F401
        from efficientnet.data.config import DataConfig  # noqa: F401
    except ImportError:
        return False
    return True
