"""SavedModel -> TFLite (fp32, fp16 weights, full int8) and ONNX (tf2onnx)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterable

import numpy as np
import tensorflow as tf

from efficientnet.export.config import ONNX_MIN_OPSET, PIXELS_INPUT, PIXELS_SIGNATURE, ExportError

INT8_IO_TYPES = {"uint8": tf.uint8, "int8": tf.int8}


def set_full_integer(converter, representative_dataset, int8_io_type: str = "int8") -> None:
    """Sets a TFLiteConverter to full-integer quantization: int8 weights and activations, int8
    kernels only, `int8_io_type` input and output, calibrated on `representative_dataset`."""
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = INT8_IO_TYPES[int8_io_type]
    converter.inference_output_type = INT8_IO_TYPES[int8_io_type]


def convert_tflite(
    saved_model_dir: str,
    path: str,
    quantization: str | None = None,
    representative_images: Iterable[np.ndarray] | None = None,
    int8_io_type: str = "int8",
) -> None:
    """Converts the pixels signature to TFLite.

    quantization: None (float32), "fp16" (float16 weights, float32 compute on CPU) or "int8"
    (full integer: weights and activations int8, `int8_io_type` input and probabilities output;
    `representative_images` yields float32 [H, W, 3] pixels in [0, 255] for calibration).
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=[PIXELS_SIGNATURE]
    )
    if quantization == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        if representative_images is None:
            raise ExportError("int8 quantization needs representative images for calibration.")

        def representative_dataset():
            for image in representative_images:
                yield {PIXELS_INPUT: np.asarray(image, np.float32)[None]}

        set_full_integer(converter, representative_dataset, int8_io_type)
    elif quantization is not None:
        raise ValueError(f"Unknown TFLite quantization {quantization!r}")
    try:
        with warnings.catch_warnings():  # int8 calibration's tf.lite.Interpreter move notice
            warnings.simplefilter("ignore")
            flatbuffer = converter.convert()
    except Exception as error:  # the converter raises many types; keep the message short
        raise ExportError(f"TFLite conversion ({quantization or 'fp32'}) failed: "
                          f"{_last_line(str(error))}") from error
    with open(path, "wb") as f:
        f.write(flatbuffer)


def convert_onnx(saved_model_dir: str, path: str, opset: int = 17, timeout_s: int = 1800) -> None:
    """Converts the pixels signature to ONNX with tf2onnx (its CLI, the documented route).

    The batch dimension stays dynamic (named `batch`); spatial size and channels are fixed.
    """
    if opset < ONNX_MIN_OPSET:
        raise ExportError(f"ONNX opset must be {ONNX_MIN_OPSET} or newer, got {opset}.")
    try:
        import onnx  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as error:
        raise ExportError(
            f"ONNX export needs tf2onnx and onnx ({error.name} is missing); "
            "install them with: pip install -e '.[export]'"
        ) from error
    command = [
        sys.executable, "-m", "tf2onnx.convert", "--saved-model", saved_model_dir,
        "--signature_def", PIXELS_SIGNATURE, "--tag", "serve", "--opset", str(opset),
        "--output", path,
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env,
                                timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as error:
        raise ExportError(f"tf2onnx did not finish within {timeout_s} s.") from error
    if result.returncode != 0 or not os.path.isfile(path):
        errors = [line for line in result.stderr.splitlines() if "Error" in line or "error" in line]
        detail = errors[-1] if errors else _last_line(result.stderr)
        raise ExportError(f"tf2onnx conversion failed (exit {result.returncode}): {detail.strip()}")
    _check_and_name_batch_dimension(path)


def _check_and_name_batch_dimension(path: str) -> None:
    import onnx

    model = onnx.load(path)
    # tf2onnx writes a graph that onnxruntime rejects when it cannot convert a function call:
    # XLA-compiled functions (e.g. Keras' own grouped Conv2D on TensorFlow; the zoo uses
    # GroupedConv2D, which avoids it) stay function calls.
    leftovers = [node for node in model.graph.node
                 if node.domain not in ("", "ai.onnx", "ai.onnx.ml")
                 or node.op_type in ("StatefulPartitionedCall", "PartitionedCall")]
    if leftovers:
        os.remove(path)
        kinds = sorted({node.op_type for node in leftovers})
        raise ExportError(
            f"tf2onnx left {len(leftovers)} TensorFlow op(s) unconverted ({', '.join(kinds)}, "
            f"first: {leftovers[0].name}); XLA-compiled functions such as Keras' grouped "
            "Conv2D on TensorFlow cannot be converted to ONNX (use "
            "efficientnet.models.layers.GroupedConv2D).")
    # tf2onnx names unknown dims `unk__N`; a stable `batch` name documents the dynamic axis.
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    onnx.save(model, path)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
