"""Transfer learning: restore weights from another checkpoint, exclude some, freeze some.

Sources, detected from the path:

- `native`: a checkpoint of this project (directory or `ckpt-N` prefix; `checkpointing.py`).
- `tf1`: a tensorflow/tpu or google/automl EfficientNet / EfficientNetV2 checkpoint, variables named
  as in docs/reference.md#checkpoint-variable-names (`efficientnet-b0/blocks_0/conv2d/kernel`,
  with or without the `model/` sub-scope), `/ExponentialMovingAverage` copies preferred unless
  `prefer_ema=False`.
- `keras`: a Keras weights file (`.weights.h5`) of the same architecture.
- `torch`: a PyTorch state dict (`.pth`/`.pt`/`.bin`, zip or legacy, or `.safetensors`) in
  efficientnet_pytorch or timm naming, read without torch (`torch_files.py`, `torch_names.py`);
  exclusion patterns also match the tensor names (`_fc`, `classifier`).

Exclusion patterns are prefixes or regular expressions matched against every name a variable has:
its Keras path (`head_dense/kernel`), its TF1 name (`efficientnet-b0/head/dense/kernel`) and the
TF1 name with `model/` (`efficientnet-b0/model/head/dense/kernel`), so the TF1 code's own
example and a short `head/dense` both work. Everything done is reported in `restore_report.json`.
"""

from __future__ import annotations

import json
import os
import re

import keras
import numpy as np

from efficientnet import models

EMA_SUFFIX = "/ExponentialMovingAverage"
REPORT_NAME = "restore_report.json"


class RestoreError(ValueError):
    """A checkpoint that cannot be restored into the model, with the fix in the message."""


def _compile(patterns) -> list[tuple[str, re.Pattern | None]]:
    compiled = []
    for pattern in patterns or ():
        pattern = pattern.strip()
        if not pattern:
            continue
        try:
            compiled.append((pattern, re.compile(pattern)))
        except re.error:
            compiled.append((pattern, None))  # not a regex: used as a plain prefix
    return compiled


def _matches(names, compiled) -> bool:
    for pattern, regex in compiled:
        for name in names:
            if name.startswith(pattern) or (regex is not None and regex.search(name)):
                return True
    return False


def variable_names(model) -> dict[str, tuple[str, ...]]:
    """{keras path: (keras path, TF1 name, TF1 name with `model/`)} for every model weight."""
    try:
        pairs = models.tf1_variable_names(model)
    except ValueError:  # a model outside the zoo's naming: Keras paths only
        return {v.path: (v.path,) for v in model.weights}
    names = {}
    for path, tf1 in pairs:
        scope, rest = tf1.split("/", 1)
        names[path] = (path, tf1, f"{scope}/model/{rest}")
    return names


def _detect_format(path: str) -> str:
    from efficientnet.train import torch_files

    if torch_files.is_torch_file(path):
        if not os.path.isfile(path):
            raise RestoreError(f"--restore_path {path!r}: no such PyTorch weights file")
        return "torch"
    if path.endswith((".h5", ".keras")):
        if not os.path.isfile(path):
            raise RestoreError(f"--restore_path {path!r}: no such Keras weights file")
        return "keras"
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(path)
    except (ValueError, tf.errors.NotFoundError, tf.errors.DataLossError) as error:
        raise RestoreError(
            f"--restore_path {path!r} is not a readable checkpoint (a directory with a "
            f"'checkpoint' file, a ckpt prefix, or a .weights.h5 file): {str(error)[:200]}"
        ) from None
    keys = reader.get_variable_to_shape_map()
    if any(k.startswith("model/") and k.endswith("/.ATTRIBUTES/VARIABLE_VALUE") for k in keys):
        return "native"
    return "tf1"


def _read_tf1(path: str, prefer_ema: bool):
    """({checkpoint name without EMA suffix: (value, used_ema)}, all checkpoint names)."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(path)
    shapes = reader.get_variable_to_shape_map()
    values = {}
    for key in shapes:
        if key.endswith(EMA_SUFFIX):
            continue
        ema_key = key + EMA_SUFFIX
        if prefer_ema and ema_key in shapes:
            values[key] = (reader.get_tensor(ema_key), True)
        else:
            values[key] = (reader.get_tensor(key), False)
    return values, set(shapes)


def _checkpoint_scope(keys) -> str | None:
    for key in keys:
        match = re.match(r"^([^/]+)/(?:model/)?stem/conv2d/kernel$", key)
        if match:
            return match.group(1)
    return None


def _read_keras_h5(path: str, model, model_name: str) -> dict[str, np.ndarray]:
    """Weights of a Keras `.weights.h5` file keyed by this model's variable paths.

    Keras 3 keys the file by layer class and order, not by name, so the file is loaded into a
    model of the same architecture (with the file's own head size) and read back by path.
    """
    import h5py

    # h5py reads arrays only (no pickled objects, no code), so an untrusted file cannot run code.
    try:
        with h5py.File(path, "r") as h5:
            dense = sorted(
                (name for name in h5.get("layers", {}) if re.fullmatch(r"dense(_\d+)?", name)),
                key=lambda name: int(name.rsplit("_", 1)[1]) if "_" in name else 0,
            )
            head_classes = int(h5["layers"][dense[-1]]["vars"]["1"].shape[0]) if dense else None
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise RestoreError(
            f"--restore_path {path!r} is not a Keras .weights.h5 file of an EfficientNet "
            f"({str(error).splitlines()[0][:160] if str(error) else type(error).__name__}): "
            "pass the file written by model.save_weights()") from None
    source = models.build(model_name, num_classes=head_classes,
                          image_size=int(model.input.shape[1]))
    try:
        source.load_weights(path)
    except (ValueError, KeyError, OSError) as error:
        raise RestoreError(
            f"--restore_path {path!r} does not fit {model_name}: {str(error)[:300]}") from None
    return {v.path: v.numpy() for v in source.weights}


def _read_torch(path: str, model, prefer_ema: bool):
    """({keras path: value}, {keras path: torch tensor name}) of a PyTorch weights file."""
    from efficientnet.train import torch_files, torch_names

    try:
        state = torch_files.read_state_dict(path, prefer_ema=prefer_ema)
    except torch_files.TorchFileError as error:
        raise RestoreError(f"--restore_path {error}") from None
    try:
        return torch_names.map_state_dict(state, model)
    except torch_names.TorchMappingError as error:
        raise RestoreError(f"--restore_path {path!r}: {error}") from None


def _head_mismatch_message(path, names, source_shape, target_shape) -> str:
    short = "head/dense" if "head_dense" in path else names[-1].rsplit("/", 1)[0]
    if len(source_shape) and len(target_shape) and source_shape[:-1] == target_shape[:-1] \
            and "head_dense" in path:
        return (
            f"{short} has {source_shape[-1]} classes in the checkpoint and {target_shape[-1]} in "
            f"the model: add --restore_exclude={short}")
    return (
        f"{path} ({names[1] if len(names) > 1 else path}) has shape {tuple(source_shape)} in the "
        f"checkpoint and {tuple(target_shape)} in the model: add --restore_exclude={short} or "
        "check --model_name")


def _drop_background_class(value, target_shape):
    """A 1001-class head (index 0 = background) restored into a 1000-class head."""
    if value.shape[-1] == 1001 and target_shape[-1] == 1000:
        return value[..., 1:]
    return value


def restore_pretrained(
    model,
    model_name: str,
    restore_path: str,
    exclude=(),
    prefer_ema: bool = True,
    model_dir: str | None = None,
    verbose: bool = True,
) -> dict:
    """Restores `restore_path` into `model` (except `exclude`); returns and writes the report."""
    if not restore_path:
        raise RestoreError("--restore_path is empty")
    spec = models.get_spec(model_name)
    fmt = _detect_format(restore_path)
    compiled = _compile(exclude)
    names = variable_names(model)
    variables = {v.path: v for v in model.weights}

    # {keras path: (value, used_ema)} for what the checkpoint has; `unused` starts with all of it.
    found: dict[str, tuple[np.ndarray, bool]] = {}
    if fmt == "torch":
        torch_values, torch_sources = _read_torch(restore_path, model, prefer_ema)
        found = {path: (value, False) for path, value in torch_values.items()}
        names = {path: names.get(path, (path,)) + ((torch_sources[path],)
                 if path in torch_sources else ()) for path in variables}
        unused = set()
    elif fmt == "native":
        from efficientnet.train import checkpointing

        native, used_any = checkpointing.read_weights(restore_path, use_ema=prefer_ema)
        found = {path: (value, used_any) for path, value in native.items()}
        unused = set(native) - set(variables)
    elif fmt == "keras":
        keras_values = _read_keras_h5(restore_path, model, model_name)
        found = {path: (value, False) for path, value in keras_values.items()}
        unused = set()
    else:
        tf1_values, all_keys = _read_tf1(restore_path, prefer_ema)
        scope = _checkpoint_scope(tf1_values)
        if scope is None:
            raise RestoreError(
                f"--restore_path {restore_path!r} is neither a checkpoint of this project nor a "
                "TF EfficientNet checkpoint (no '<model>/stem/conv2d/kernel' variable)")
        if scope.lower() != spec.scope.lower():
            raise RestoreError(
                f"--restore_path {restore_path!r} holds {scope}, not {spec.scope}: pass "
                f"--model_name={scope.lower()} or a checkpoint of {spec.scope}")
        by_tf1 = {}
        for path, candidates in names.items():
            for candidate in candidates[1:]:
                candidate = candidate.replace(spec.scope, scope, 1)
                if candidate in tf1_values:
                    by_tf1[path] = candidate
                    break
        found = {path: tf1_values[key] for path, key in by_tf1.items()}
        used_keys = set(by_tf1.values())
        unused = {
            k for k in all_keys
            if not k.endswith(EMA_SUFFIX) and k not in used_keys
            and k.startswith(scope + "/")  # global_step, optimizer slots live outside the scope
            and not re.search(r"/(RMSProp|Momentum|Adam)(_\d+)?$", k)
        }

    report = {
        "source": restore_path, "format": fmt, "restored": [], "excluded": [],
        "missing_in_checkpoint": [], "unused_in_checkpoint": sorted(unused), "used_ema": False,
    }
    assignments = []
    mismatches = []
    for path, variable in variables.items():
        candidates = names.get(path, (path,))
        if _matches(candidates, compiled):
            report["excluded"].append(path)
            continue
        if path not in found:
            report["missing_in_checkpoint"].append(path)
            continue
        value, used_ema = found[path]
        target_shape = tuple(variable.shape)
        value = _drop_background_class(np.asarray(value), target_shape)
        if tuple(value.shape) != target_shape:
            mismatches.append((path, candidates, value.shape, target_shape))
            continue
        assignments.append((variable, value))
        report["restored"].append(path)
        report["used_ema"] = report["used_ema"] or bool(used_ema)

    if fmt == "torch" and report["missing_in_checkpoint"]:
        first = report["missing_in_checkpoint"][0]
        raise RestoreError(
            f"--restore_path {restore_path!r} has no tensor for {first} (and "
            f"{len(report['missing_in_checkpoint']) - 1} more variables of {model_name}): was it "
            "written for another --model_name?")
    if mismatches:
        body = [m for m in mismatches if "head_dense" not in m[0]]
        if len(body) > max(3, len(variables) // 10):
            raise RestoreError(
                f"--restore_path {restore_path!r} does not fit {model_name}: {len(body)} variables "
                f"differ in shape (e.g. {body[0][0]}: {tuple(body[0][2])} vs {body[0][3]}); was "
                "it written for another --model_name?")
        raise RestoreError(_head_mismatch_message(*mismatches[0]))
    if not assignments:
        raise RestoreError(
            f"Nothing of {model_name} was found in {restore_path!r} ({fmt} format): check "
            "--model_name, --restore_path and --restore_exclude")
    for variable, value in assignments:
        variable.assign(value)

    if verbose:
        print(
            f"Restored {len(report['restored'])} of {len(variables)} variables from "
            f"{restore_path} ({fmt}{', EMA' if report['used_ema'] else ''}); excluded "
            f"{len(report['excluded'])}, missing in checkpoint "
            f"{len(report['missing_in_checkpoint'])}, unused in checkpoint "
            f"{len(report['unused_in_checkpoint'])}", flush=True)
        for path in report["missing_in_checkpoint"][:10]:
            print(f"  not in checkpoint, kept initial value: {path}", flush=True)
    if model_dir:
        write_report(report, model_dir)
    return report


def write_report(report: dict, directory: str) -> str:
    """Writes `restore_report.json` atomically into `directory`; returns its path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, REPORT_NAME)
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(report, handle, indent=2)
    os.replace(temporary, path)
    return path


def frozen_variables(model, pattern: str | None) -> list:
    """The trainable variables whose Keras path or TF1 name matches regex `pattern`."""
    if not pattern:
        return []
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise RestoreError(f"--freeze_pattern {pattern!r} is not a valid regex: {error}") from None
    names = variable_names(model)
    return [
        v for v in model.trainable_weights
        if any(regex.search(name) for name in names.get(v.path, (v.path,)))
    ]


def apply_freeze(model, pattern: str | None) -> list[str]:
    """Sets `trainable=False` on every layer with a variable matching `pattern`.

    A frozen BatchNormalization layer runs in inference mode in Keras 3, so frozen parts keep
    their moving statistics. Returns the names of the frozen layers.
    """
    frozen = {v.path for v in frozen_variables(model, pattern)}
    if pattern and not frozen:
        raise RestoreError(f"--freeze_pattern {pattern!r} matches no variable of {model.name}")
    layer_names = []
    for layer in model.layers:
        if layer.trainable_weights and any(v.path in frozen for v in layer.trainable_weights):
            layer.trainable = False
            layer_names.append(layer.name)
    return layer_names


def _num_classes_in(restore_path: str, fmt: str) -> int | None:
    """Class count of the checkpoint's head, for the converter's default."""
    import tensorflow as tf

    if fmt == "torch":
        from efficientnet.train import torch_files

        try:
            state = torch_files.read_state_dict(restore_path)
        except torch_files.TorchFileError as error:
            raise RestoreError(f"--checkpoint {error}") from None
        for name in ("_fc.bias", "classifier.bias"):
            if name in state:
                return int(state[name].shape[0])
        return None
    if fmt != "tf1":
        return None
    shapes = tf.train.load_checkpoint(restore_path).get_variable_to_shape_map()
    for key, shape in shapes.items():
        if re.search(r"/head/dense/bias$", key):
            return int(shape[0])
    return None


def convert(model_name: str, checkpoint: str, output_dir: str, num_classes: int | None = None,
            prefer_ema: bool = True, exclude=()) -> dict:
    """Converts a TF1 / automl / Keras checkpoint into a checkpoint of this project.

    Writes `<output_dir>/ckpt-0` (model and EMA sections hold the same restored weights) and
    `restore_report.json`; checks that a forward pass gives finite logits.
    """
    import tensorflow as tf

    from efficientnet.train import checkpointing

    fmt = _detect_format(checkpoint)
    if num_classes is None:
        found = _num_classes_in(checkpoint, fmt)
        # 1001-class checkpoints keep their background row only when asked for explicitly.
        num_classes = 1000 if found in (None, 1001) else found
    keras.backend.clear_session()
    model = models.build(model_name, num_classes=num_classes)
    report = restore_pretrained(model, model_name, checkpoint, exclude=exclude,
                                prefer_ema=prefer_ema, model_dir=output_dir)
    size = int(model.input.shape[1])
    probe = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype("float32")
    logits = np.asarray(model(probe, training=False))
    if not np.isfinite(logits).all():
        raise RestoreError(f"The converted {model_name} gives non-finite logits: not written")
    step = tf.Variable(0, dtype=tf.int64)
    ema = {p: tf.Variable(v.numpy()) for p, v in checkpointing.weight_dict(model).items()}
    ckpt = checkpointing.make_checkpoint(model, step, ema_variables=ema)
    manager = checkpointing.make_manager(ckpt, output_dir, max_to_keep=1, step=step)
    report["output"] = checkpointing.save(manager, 0)  # a failed save leaves nothing behind
    report["num_classes"] = num_classes
    report["forward_pass_finite"] = True
    write_report(report, output_dir)
    return report
