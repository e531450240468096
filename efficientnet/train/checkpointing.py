"""Checkpoint layout of this project, and loading a checkpoint into a model for inference.

Layout
------
Checkpoints are `tf.train.Checkpoint` objects managed by `tf.train.CheckpointManager` in
`model_dir`: files `<model_dir>/ckpt-<global step>.{index,data-*}` plus the usual `checkpoint`
state file (keep_checkpoint_max newest kept). Each checkpoint holds:

- ``step``: int64 scalar, the global step (number of optimizer steps taken).
- ``model/<path>``: every weight of the Keras model (`model.weights`: trainable weights and BN
  moving statistics), keyed by the Keras variable path, e.g. ``stem_conv/kernel`` or
  ``blocks_3_dw_bn/moving_mean``. Keys do not depend on layer creation order or on which layers
  are trainable, so a model built fresh for export finds every value by name.
- ``ema/<path>``: the exponential moving average of the same weights (same keys); absent when the
  run used ``--moving_average_decay=0``. Evaluation and export use these by default.
- ``optimizer``: the Keras optimizer and its slot variables (resume only).

In the raw checkpoint the keys read ``model/stem_conv.Skernel/.ATTRIBUTES/VARIABLE_VALUE``
(TensorFlow escapes "/" as ".S" and "." as ".."); `checkpoint_key` builds them and
`read_weights` returns plain ``{path: array}`` dicts, so other modules never need the escaping.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys

import numpy as np
import tensorflow as tf

CHECKPOINT_NAME = "ckpt"
_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def weight_dict(model) -> dict[str, tf.Variable]:
    """{Keras variable path: variable} for every weight of `model` (the checkpoint keys)."""
    weights: dict[str, tf.Variable] = {}
    for variable in model.weights:
        path = variable.path
        if path in weights:
            raise ValueError(
                f"Two weights of model {model.name!r} share the path {path!r}; give the layers "
                "unique names so checkpoints can key them by path")
        weights[path] = variable
    return weights


def _escape(name: str) -> str:
    return name.replace(".", "..").replace("/", ".S")


def _unescape(name: str) -> str:
    return re.sub(r"\.(.)", lambda m: "/" if m.group(1) == "S" else m.group(1), name)


def checkpoint_key(section: str, path: str) -> str:
    """The raw checkpoint key of weight `path` in `section` ("model" or "ema")."""
    return f"{section}/{_escape(path)}{_SUFFIX}"


def latest_checkpoint(model_dir: str | None) -> str | None:
    """Prefix of the newest checkpoint in `model_dir`, or None (also for a missing directory).

    A checkpoint prefix (``.../ckpt-100``) is accepted too and returned when it exists.
    """
    if not model_dir:
        return None
    if tf.io.gfile.isdir(model_dir):
        return tf.train.latest_checkpoint(model_dir)
    if tf.io.gfile.exists(model_dir + ".index"):
        return model_dir
    return None


def _resolve(model_dir: str) -> str:
    if tf.io.gfile.isdir(model_dir):
        path = latest_readable_checkpoint(
            model_dir, say=lambda line: print(line, file=sys.stderr, flush=True))
    else:
        path = latest_checkpoint(model_dir)
    if path is None:
        raise FileNotFoundError(
            f"No checkpoint found in {model_dir!r}: expected {CHECKPOINT_NAME}-<step>.index files "
            "written by `python -m efficientnet.main` there (train first, or pass the right "
            "--model_dir)")
    return path


def read_step(checkpoint_path: str) -> int:
    """Global step stored in a checkpoint (directory or prefix)."""
    reader = tf.train.load_checkpoint(_resolve(checkpoint_path))
    return int(reader.get_tensor("step" + _SUFFIX))


def read_weights(checkpoint_path: str, use_ema: bool = True) -> tuple[dict[str, np.ndarray], bool]:
    """({weight path: value}, used_ema) from a checkpoint directory or prefix of this project.

    With `use_ema`, each weight comes from the EMA section when the checkpoint has it there.
    """
    reader = tf.train.load_checkpoint(_resolve(checkpoint_path))
    shapes = reader.get_variable_to_shape_map()
    model_prefix, ema_prefix = "model/", "ema/"
    values: dict[str, np.ndarray] = {}
    used_ema = False
    for key in shapes:
        if not key.startswith(model_prefix) or not key.endswith(_SUFFIX):
            continue
        escaped = key[len(model_prefix):-len(_SUFFIX)]
        if "/" in escaped:  # a nested object (e.g. optimizer slot), not a weight of the dict
            continue
        path = _unescape(escaped)
        ema_key = ema_prefix + escaped + _SUFFIX
        if use_ema and ema_key in shapes:
            values[path] = reader.get_tensor(ema_key)
            used_ema = True
        else:
            values[path] = reader.get_tensor(key)
    if not values:
        raise ValueError(
            f"{checkpoint_path!r} is not a checkpoint of this project (no 'model/<path>' weights); "
            "TF1 / Keras checkpoints are restored with --restore_path instead")
    return values, used_ema


def assign_weights(model, values: dict[str, np.ndarray], source: str = "checkpoint") -> None:
    """Assigns {path: value} to the weights of `model`; every weight must be present."""
    targets = weight_dict(model)
    missing = [p for p in targets if p not in values]
    if missing:
        raise ValueError(
            f"The {source} has no value for {len(missing)} weight(s) of model {model.name!r}, "
            f"e.g. {missing[:3]}: was it written for another model or --num_label_classes?")
    for path, variable in targets.items():
        value = values[path]
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"Weight {path!r} has shape {tuple(value.shape)} in the {source} and "
                f"{tuple(variable.shape)} in the model (different --num_label_classes or model?)")
        variable.assign(value)


def load_weights_for_inference(model, model_dir: str, use_ema: bool = True) -> int:
    """Restores the latest checkpoint of `model_dir` into built `model`; returns its global step.

    EMA weights are used when `use_ema` and the checkpoint has them (raw weights otherwise).
    Raises FileNotFoundError naming `model_dir` when it holds no checkpoint.
    """
    path = _resolve(model_dir)
    values, _ = read_weights(path, use_ema=use_ema)
    assign_weights(model, values, source=f"checkpoint {path!r}")
    return read_step(path)


def tf_variable(variable):
    """The tf.Variable behind a Keras variable (what tf.distribute and tf.train expect)."""
    value = getattr(variable, "value", None)
    return value if isinstance(value, tf.Variable) else variable


def make_checkpoint(model, step, ema_variables=None, optimizer=None) -> tf.train.Checkpoint:
    """The `tf.train.Checkpoint` of the layout above (ema_variables: {path: variable})."""
    objects = {"step": step, "model": {p: tf_variable(v) for p, v in weight_dict(model).items()}}
    if ema_variables:
        objects["ema"] = dict(ema_variables)
    if optimizer is not None:
        objects["optimizer"] = optimizer
    return tf.train.Checkpoint(**objects)


def make_manager(checkpoint: tf.train.Checkpoint, directory: str, max_to_keep: int,
                 step=None) -> tf.train.CheckpointManager:
    """CheckpointManager writing `<directory>/ckpt-<step>`."""
    return tf.train.CheckpointManager(
        checkpoint, directory=directory, max_to_keep=max_to_keep,
        checkpoint_name=CHECKPOINT_NAME, step_counter=step)


def worker_checkpoint_dir(model_dir: str, task_id: int) -> str:
    """Where a non-chief MultiWorker task writes its (discarded) checkpoint copies."""
    return os.path.join(model_dir, ".workers", f"worker_{task_id}")


# ---------------------------------------------------------------------------------------------
# Faults: one trainer per model_dir, partial saves removed, unreadable checkpoints skipped.

LOCK_FILE = ".train.lock"


@contextlib.contextmanager
def training_lock(model_dir: str, is_chief: bool = True):
    """Within: this process alone trains into `model_dir` (only the chief locks; MultiWorker
    workers write into their own `.workers/` folders). A second trainer gets DirectoryBusy."""
    if not is_chief or not model_dir:
        yield
        return
    from tfrecord_tools.locking import hold_directory

    with hold_directory(model_dir, "--model_dir", LOCK_FILE):
        yield


def _step_of(prefix: str) -> int:
    match = re.search(rf"{CHECKPOINT_NAME}-(\d+)$", prefix)
    return int(match.group(1)) if match else -1


def checkpoint_problem(prefix: str) -> str | None:
    """Why checkpoint `prefix` cannot be restored (missing or truncated data, bad CRC), or None.

    Every tensor is read, since a truncated `.data` file still has an intact index."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        for key in reader.get_variable_to_shape_map():
            reader.get_tensor(key)
    except (tf.errors.OpError, ValueError, IndexError, OSError) as error:
        text = getattr(error, "message", None) or str(error) or type(error).__name__
        return text.strip().splitlines()[0][:200]
    return None


def _partial_saves(model_dir: str) -> list[str]:
    """What an interrupted or failed save leaves: `ckpt-N_temp/` folders and temporary files."""
    names = tf.io.gfile.listdir(model_dir) if tf.io.gfile.isdir(model_dir) else []
    return [os.path.join(model_dir, name.rstrip("/")) for name in names
            if re.match(rf"^{CHECKPOINT_NAME}-\d+_temp", name)
            or re.match(r"^checkpoint\.tmp[0-9a-f]+", name)]


def _remove(path: str) -> None:
    try:
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        else:
            tf.io.gfile.remove(path)
    except tf.errors.OpError:
        pass


def remove_checkpoint_files(prefix: str) -> None:
    """Removes `prefix.index` and its `.data-*` files."""
    for path in tf.io.gfile.glob(prefix + ".index") + tf.io.gfile.glob(prefix + ".data-*"):
        _remove(path)


class CheckpointError(ValueError):
    """No checkpoint of a directory can be read; the message names them and why."""


def latest_readable_checkpoint(model_dir: str | None, clean: bool = False,
                               say=print) -> str | None:
    """The newest checkpoint of `model_dir` that reads completely, or None when it has none.

    Newer unreadable ones (a save cut short by a full disk or a kill) are skipped, saying so in
    one line; with `clean` (the training chief, holding the lock) they and the leftovers of
    partial saves are removed. CheckpointError when checkpoints exist but none reads. A prefix
    instead of a directory is checked as it is.
    """
    if not model_dir:
        return None
    if not tf.io.gfile.isdir(model_dir):
        latest = latest_checkpoint(model_dir)
        problem = checkpoint_problem(latest) if latest else None
        if problem:
            raise CheckpointError(f"checkpoint {latest} cannot be read ({problem})")
        return latest
    if clean:
        for path in _partial_saves(model_dir):
            _remove(path)
    prefixes = {path[: -len(".index")]
                for path in tf.io.gfile.glob(os.path.join(model_dir, f"{CHECKPOINT_NAME}-*.index"))}
    state = tf.train.get_checkpoint_state(model_dir)
    if state is not None:
        prefixes |= {os.path.join(model_dir, os.path.basename(p))
                     for p in state.all_model_checkpoint_paths}
    skipped, problems = [], []
    for prefix in sorted(prefixes, key=_step_of, reverse=True):
        problem = (checkpoint_problem(prefix) if tf.io.gfile.exists(prefix + ".index")
                   else "no .index file")
        if problem is None:
            if skipped:
                say(f"Skipped unreadable checkpoint(s) {', '.join(problems)}"
                    f"{' (removed)' if clean else ''}; using {prefix}")
            if skipped and clean:
                for bad in skipped:
                    remove_checkpoint_files(bad)
                kept = [p for p in sorted(prefixes, key=_step_of) if p not in skipped]
                tf.compat.v1.train.update_checkpoint_state(
                    model_dir, prefix, all_model_checkpoint_paths=kept)
            return prefix
        skipped.append(prefix)
        problems.append(f"{os.path.basename(prefix)} ({problem})")
    if skipped:
        raise CheckpointError(
            f"No checkpoint in {model_dir} can be read: {', '.join(problems)}. Move them "
            "away to start over, or point --model_dir at a copy with intact checkpoints")
    return None


def save(manager: tf.train.CheckpointManager, step: int) -> str:
    """`manager.save(step)`; when the save fails (disk full...), what it wrote is removed, so
    the previous checkpoints stay the latest."""
    try:
        return manager.save(checkpoint_number=step)
    except BaseException:
        prefix = os.path.join(manager.directory, f"{CHECKPOINT_NAME}-{step}")
        for path in _partial_saves(manager.directory):
            if os.path.basename(path).startswith(f"{CHECKPOINT_NAME}-{step}_temp"):
                _remove(path)
        if manager.latest_checkpoint != prefix:  # the state file does not name it yet
            remove_checkpoint_files(prefix)
        raise


def restore(checkpoint: tf.train.Checkpoint, prefix: str) -> None:
    """Restores `prefix` into `checkpoint` (every saved object must match); CheckpointError
    naming the file when it was written for another model or head."""
    try:
        checkpoint.restore(prefix).assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        text = (getattr(error, "message", None) or str(error)).strip().splitlines()
        raise CheckpointError(
            f"checkpoint {prefix} does not fit this model ({text[0][:200] if text else ''}): "
            "was it written for another --model_name, --num_label_classes or --image_size? "
            "Use the run's own flags, or another --model_dir") from None
