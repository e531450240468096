"""Export a model in every format and prove each one agrees with Keras (`export_report.json`).

`export_model` takes a built Keras model (tests pass one directly); `run_export` is what the CLI
calls: it builds the model from `ExportConfig`, loads the latest checkpoint (EMA weights by
default) and then calls `export_model`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time

import numpy as np

from efficientnet.export import images as image_io
from efficientnet.export.config import (
    FORMAT_FILES,
    FP32_FORMATS,
    FP32_TOLERANCE,
    LABELS_FILE,
    MODEL_INFO_FILE,
    REPORT_FILE,
    ExportConfig,
    ExportError,
)
from efficientnet.export.labels import data_dir_labels, read_labels, write_labels
from efficientnet.export.runtime import load_predictor, predict_batched

log = logging.getLogger("efficientnet.export")
INT8_GAP_WARNING = 0.02  # top-1 drop (fraction) above which a quantized format is flagged


def run_export(config: ExportConfig) -> dict:
    """Builds `config.model_name`, restores the latest checkpoint of `config.model_dir`, exports."""
    from efficientnet.models import build, get_spec

    try:
        spec = get_spec(config.model_name)
    except ValueError as error:
        raise ExportError(str(error)) from error
    if not config.model_dir:
        raise ExportError("--model_dir is required: the directory with the checkpoint to export.")
    if not os.path.isdir(config.model_dir):
        raise ExportError(f"--model_dir {config.model_dir} does not exist.")
    if not os.listdir(config.model_dir):
        raise ExportError(f"--model_dir {config.model_dir} is empty: no checkpoint to export; "
                          "train first or point --model_dir at a training directory.")
    num_classes = config.num_label_classes or spec.num_classes
    class_names = read_labels(config.labels_file, num_classes) if config.labels_file else None
    if config.data_dir:
        image_io.check_data_dir(config.data_dir)
        if class_names is None:
            class_names = data_dir_labels(config.data_dir, num_classes)

    import keras

    from efficientnet.train.checkpointing import load_weights_for_inference

    # Exported graphs compute in float32 whatever policy a training run left in this process.
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        model = build(config.model_name, num_classes=num_classes,
                      image_size=config.image_size or spec.eval_size)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    try:
        step = load_weights_for_inference(model, config.model_dir, use_ema=config.use_ema)
    except (FileNotFoundError, ValueError) as error:  # no checkpoint / another model's
        raise ExportError(str(error).strip().splitlines()[0]) from error
    used_ema = config.use_ema and _checkpoint_has_ema(config.model_dir)
    log.info("Restored %s weights of step %s from %s", "EMA" if used_ema else "raw", step,
             config.model_dir)
    source = {"model_dir": os.path.abspath(config.model_dir), "global_step": int(step),
              "ema_weights": used_ema}
    return export_model(model, config, class_names=class_names, checkpoint=source)


def _checkpoint_has_ema(model_dir: str) -> bool:
    # load_weights_for_inference falls back to raw weights when a run kept no EMA; say which.
    import tensorflow as tf

    from efficientnet.train.checkpointing import latest_readable_checkpoint

    path = latest_readable_checkpoint(model_dir, say=lambda line: None)  # said when loading
    return bool(path) and any(name.startswith("ema/") for name, _ in tf.train.list_variables(path))


def export_model(
    model,
    config: ExportConfig,
    class_names: list[str] | None = None,
    checkpoint: dict | None = None,
) -> dict:
    """Writes every format of `config.formats` for `model` and returns (and writes) the report.

    Raises `ExportError` after writing the report when a format failed to convert or a float32
    format differs from Keras by more than `FP32_TOLERANCE`.
    """
    from efficientnet.models import get_spec

    spec = get_spec(config.model_name)
    # Decided once here; serving_bytes, calibration, the checks and model_info.json follow.
    if config.resize_method:
        spec = dataclasses.replace(spec, interpolation=config.resize_method)
    if config.crop_padding is not None:
        spec = dataclasses.replace(spec, crop_padding=config.crop_padding)
    image_size = int(model.input_shape[1])
    if config.image_size and config.image_size != image_size:
        raise ExportError(f"--image_size {config.image_size} differs from the model's input "
                          f"size {image_size}.")
    num_classes = int(model.output_shape[-1])
    if class_names is not None and len(class_names) != num_classes:
        raise ExportError(f"{len(class_names)} class names given for a {num_classes}-class model.")
    export_dir = config.export_dir
    os.makedirs(export_dir, exist_ok=True)

    parity_pixels, parity_source = _parity_batch(config, spec, image_size)
    keras_parity = keras_probabilities(model, spec, parity_pixels)
    evaluation = None
    if config.data_dir:
        eval_pixels, eval_labels = image_io.read_split(
            config.data_dir, "validation", image_size, num_classes, config.num_eval_images,
            spec.crop_padding, spec.interpolation,
        )
        evaluation = (eval_pixels, eval_labels)
        log.info("Accuracy check on %d validation images", len(eval_labels))

    report = {
        "model_name": spec.name,
        "image_size": image_size,
        "num_classes": num_classes,
        "preprocessing": {"crop_padding": spec.crop_padding, "resize_method": spec.interpolation,
                          "mean": list(spec.mean), "std": list(spec.std)},
        "checkpoint": checkpoint,
        "parity_batch": {"source": parity_source, "num_images": len(parity_pixels)},
        "fp32_tolerance": FP32_TOLERANCE,
        "formats": {},
    }
    if evaluation is not None:
        keras_eval = keras_probabilities(model, spec, evaluation[0])
        report["keras"] = _accuracy(keras_eval, evaluation[1])

    _write_model_info(export_dir, spec, image_size, num_classes, class_names)
    scratch = tempfile.mkdtemp(prefix="export-")
    try:
        saved_model_dir = (os.path.join(export_dir, FORMAT_FILES["saved_model"])
                           if "saved_model" in config.formats else os.path.join(scratch, "sm"))
        try:
            saved_model_seconds = _timed("saved_model", _save_saved_model, model, spec,
                                         image_size, saved_model_dir, class_names)
        except Exception as error:  # every other format is converted from it: stop here
            raise ExportError(f"Writing the SavedModel failed: {type(error).__name__}: "
                              f"{_first_line(str(error))}") from error
        for fmt in config.formats:
            report["formats"][fmt] = _export_and_check(
                fmt, config, spec, saved_model_dir, image_size, parity_pixels, keras_parity,
                evaluation, report,
            )
        if "saved_model" in report["formats"]:
            report["formats"]["saved_model"]["seconds"] = saved_model_seconds
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    failures = [f"{fmt}: {entry['error']}" for fmt, entry in report["formats"].items()
                if "error" in entry]
    report["ok"] = not failures
    with open(os.path.join(export_dir, REPORT_FILE), "w") as f:
        json.dump(report, f, indent=2)
    log.info("Wrote %s", os.path.join(export_dir, REPORT_FILE))
    if failures:
        raise ExportError(f"Export failed ({'; '.join(failures)}); see "
                          f"{os.path.join(export_dir, REPORT_FILE)}.")
    return report


def keras_probabilities(model, spec, pixels: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """The reference: Keras model in inference mode on normalised pixels, softmax in float32."""
    import tensorflow as tf

    from efficientnet.data.preprocessing import normalize_images

    outputs = []
    for start in range(0, len(pixels), batch_size):
        batch = normalize_images(tf.constant(pixels[start : start + batch_size], tf.float32), spec)
        logits = model(batch, training=False)
        outputs.append(tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1).numpy())
    return np.concatenate(outputs)


def _export_and_check(fmt, config, spec, saved_model_dir, image_size, parity_pixels,
                      keras_parity, evaluation, report) -> dict:
    from efficientnet.export import converters

    path = (saved_model_dir if fmt == "saved_model"
            else os.path.join(config.export_dir, FORMAT_FILES[fmt]))
    entry: dict = {"file": os.path.relpath(path, config.export_dir)}
    try:
        if fmt in ("tflite", "tflite_fp16"):
            quantization = "fp16" if fmt == "tflite_fp16" else None
            entry["seconds"] = _timed(fmt, converters.convert_tflite, saved_model_dir, path,
                                      quantization)
        elif fmt == "tflite_int8":
            calibration, source = _calibration_images(config, spec, image_size, parity_pixels)
            report["calibration"] = {"source": source, "num_images": len(calibration)}
            entry["seconds"] = _timed(fmt, converters.convert_tflite, saved_model_dir, path,
                                      "int8", calibration, config.int8_io_type)
            entry["io_type"] = config.int8_io_type
        elif fmt == "onnx":
            entry["seconds"] = _timed(fmt, converters.convert_onnx, saved_model_dir, path,
                                      config.onnx_opset)
            entry["opset"] = config.onnx_opset
        predictor = load_predictor(path, num_threads=None)
        probabilities = predictor.predict(parity_pixels)
    except ExportError as error:
        log.error("%s: %s", fmt, error)
        entry["error"] = str(error)
        return entry
    except Exception as error:  # a converter bug must not hide the other formats' results
        log.exception("%s: unexpected error", fmt)
        entry["error"] = f"unexpected {type(error).__name__}: {_first_line(str(error))}"
        return entry

    entry["size_bytes"] = _size(path)
    entry["max_abs_diff"] = float(np.max(np.abs(probabilities - keras_parity)))
    entry["top1_agreement"] = float(np.mean(
        np.argmax(probabilities, -1) == np.argmax(keras_parity, -1)))
    if fmt in FP32_FORMATS:
        entry["tolerance"] = FP32_TOLERANCE
        if entry["max_abs_diff"] > FP32_TOLERANCE:
            entry["error"] = (f"max abs difference of probabilities vs Keras "
                              f"{entry['max_abs_diff']:.2e} exceeds {FP32_TOLERANCE:g}")
    if fmt == "tflite_int8":
        scale, zero_point = predictor.input_quantization
        entry["input_quantization"] = {"scale": scale, "zero_point": zero_point}
    if evaluation is not None:
        accuracy = _accuracy(predict_batched(predictor, evaluation[0]), evaluation[1])
        entry.update(accuracy)
        if "keras" in report:
            entry["top1_gap_vs_keras"] = report["keras"]["top1"] - accuracy["top1"]
            if entry["top1_gap_vs_keras"] > INT8_GAP_WARNING:
                log.warning("%s loses %.1f points of top-1 against Keras (%.4f vs %.4f): check "
                            "the calibration data (--data_dir, --num_steps).", fmt,
                            100 * entry["top1_gap_vs_keras"], accuracy["top1"],
                            report["keras"]["top1"])
    log.info("%-12s %8.2f MB  max|dp| %.2e  top-1 agreement %.3f%s", fmt,
             entry["size_bytes"] / 1e6, entry["max_abs_diff"], entry["top1_agreement"],
             f"  top-1 {entry['top1']:.4f}" if "top1" in entry else "")
    return entry


def _save_saved_model(model, spec, image_size, path, class_names):
    from efficientnet.export.serving import save_saved_model

    if os.path.exists(path):
        shutil.rmtree(path)
    save_saved_model(model, spec, image_size, path, class_names)


def _timed(name, fn, *args) -> float:
    log.info("Exporting %s ...", name)
    start = time.perf_counter()
    fn(*args)
    return round(time.perf_counter() - start, 2)


def _parity_batch(config, spec, image_size):
    if config.data_dir:
        pixels, _ = image_io.read_split(config.data_dir, "validation", image_size, None,
                                        config.parity_batch_size, spec.crop_padding,
                                        spec.interpolation)
        if len(pixels):
            return pixels, "validation"
    return image_io.synthetic_images(config.parity_batch_size, image_size, seed=0), "synthetic"


def _calibration_images(config, spec, image_size, parity_pixels):
    if config.data_dir:
        split = "train" if image_io.has_split(config.data_dir, "train") else "validation"
        pixels, _ = image_io.read_split(config.data_dir, split, image_size, None,
                                        config.num_steps, spec.crop_padding, spec.interpolation)
        if len(pixels):
            return pixels, f"{split} split of {config.data_dir}"
    log.warning("tflite_int8: no --data_dir, calibrating on %d synthetic images; the int8 model's "
                "accuracy is unknown until you export with --data_dir.", config.num_steps)
    images = image_io.synthetic_images(config.num_steps, image_size, seed=1)
    return images, "synthetic (no --data_dir)"


def _accuracy(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    top5 = np.argsort(-probabilities, axis=-1)[:, :5]
    return {
        "num_images": int(len(labels)),
        "top1": float(np.mean(top5[:, 0] == labels)),
        "top5": float(np.mean(np.any(top5 == labels[:, None], axis=-1))),
    }


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "no message"


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def _write_model_info(export_dir, spec, image_size, num_classes, class_names):
    # What `python -m efficientnet.infer` needs to feed any exported file correctly.
    info = {
        "model_name": spec.name,
        "image_size": image_size,
        "num_classes": num_classes,
        "crop_padding": spec.crop_padding,
        "interpolation": spec.interpolation,
        "input": "float32 RGB pixels in [0, 255], NHWC; normalisation is inside the model",
        "labels_file": LABELS_FILE if class_names else None,
    }
    with open(os.path.join(export_dir, MODEL_INFO_FILE), "w") as f:
        json.dump(info, f, indent=2)
    if class_names:
        write_labels(os.path.join(export_dir, LABELS_FILE), class_names)
