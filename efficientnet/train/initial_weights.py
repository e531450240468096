"""Where a run's weights start: its own latest checkpoint (resume), else --restore_path
(transfer learning, `efficientnet.train.restore`), else the initialiser; and --freeze_pattern."""

from __future__ import annotations

import keras

from efficientnet.config.schema import Experiment
from efficientnet.train import checkpointing, restore


def freeze(model: keras.Model, pattern: str | None) -> list:
    """Freezes the variables matching `pattern` (their layers stop training; BN layers whose
    weights are all frozen run in inference mode, Keras 3's trainable=False); returns them."""
    if not pattern:
        return []
    restore.apply_freeze(model, pattern)
    frozen = list(restore.frozen_variables(model, pattern))
    frozen_paths = {v.path for v in frozen}
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.weights and all(
                w.path in frozen_paths for w in layer.trainable_weights or layer.weights):
            layer.trainable = False
    return frozen


def restore_or_initialize(config: Experiment, checkpoint, model, ema, step_variable,
                          reporter, is_chief: bool = True) -> int:
    """Resumes from model_dir's newest readable checkpoint (the chief removes partial saves),
    else applies --restore_path (the EMA, if any, starts from the restored weights); returns
    the starting step."""
    latest = checkpointing.latest_readable_checkpoint(
        config.train.model_dir, clean=is_chief, say=reporter.print)
    if latest:
        checkpointing.restore(checkpoint, latest)
        step = int(step_variable.numpy())
        reporter.print(f"Resuming from {latest} at step {step}")
        reporter.drop_records_after(step)  # those of a run killed after this checkpoint
        return step
    transfer = config.transfer
    if transfer.restore_path:
        restore.restore_pretrained(
            model, model_name=config.model.model_name, restore_path=transfer.restore_path,
            exclude=list(transfer.restore_exclude), prefer_ema=transfer.restore_prefer_ema,
            model_dir=config.train.model_dir)
        if ema is not None:
            for path, average in ema.averages.items():
                average.assign(ema.sources[path])
    return 0
