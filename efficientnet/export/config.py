"""What an export run needs: formats, file names, tolerances and the `ExportConfig` dataclass."""

from __future__ import annotations

import argparse
import dataclasses
import sys

# Every format, in the order they are written; all but `saved_model` are converted from the
# SavedModel's `serving_default` signature, so they share its preprocessing and outputs.
FORMATS = ("saved_model", "tflite", "tflite_fp16", "tflite_int8", "onnx")
FORMAT_FILES = {
    "saved_model": "saved_model",
    "tflite": "model_fp32.tflite",
    "tflite_fp16": "model_fp16.tflite",
    "tflite_int8": "model_int8.tflite",
    "onnx": "model.onnx",
}
# Formats that compute in float32 must match Keras to this bound, or the export fails.
FP32_FORMATS = ("saved_model", "tflite", "onnx")
FP32_TOLERANCE = 1e-4
ONNX_MIN_OPSET = 13
PIXELS_SIGNATURE = "serving_default"  # float32 pixels in [0, 255]
BYTES_SIGNATURE = "serving_bytes"  # encoded JPEG / PNG strings
PIXELS_INPUT = "images"
BYTES_INPUT = "image_bytes"
REPORT_FILE = "export_report.json"
MODEL_INFO_FILE = "model_info.json"
LABELS_FILE = "labels.txt"


class ExportError(Exception):
    """A problem the user can fix (bad flag, missing file, failed parity): printed as one line."""


class FlagParser(argparse.ArgumentParser):
    """argparse whose flag errors are one line (`error: ...`) and exit with status 2."""

    def error(self, message):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def parse_formats(formats: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """`"tflite,onnx"` or a sequence -> a tuple in canonical order; `all` means every format."""
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [n.strip().lower() for n in names if n.strip()]
    if not names or "all" in names:
        return FORMATS
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise ExportError(
            f"Unknown export format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}."
        )
    return tuple(f for f in FORMATS if f in names)


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """One export run; `python -m efficientnet.export` flags map one-to-one onto these fields."""

    model_name: str
    export_dir: str
    model_dir: str | None = None  # latest checkpoint of this directory is exported
    formats: tuple[str, ...] = FORMATS
    num_label_classes: int | None = None  # default: the spec's (1000)
    image_size: int | None = None  # default: the spec's eval resolution
    data_dir: str | None = None  # TFRecords (train-*, validation-*) for calibration + accuracy
    num_steps: int = 100  # int8 calibration steps, one image each (the Ascend scripts' flag name)
    num_eval_images: int = 500  # validation images for the per-format accuracy check
    labels_file: str | None = None
    resize_method: str | None = None  # eval resize; default: the spec's interpolation
    crop_padding: int | None = None  # eval centre crop; default: the spec's (32)
    use_ema: bool = True
    # Input/output type of the full-integer TFLite model: int8 (pixel - 128). A uint8 model
    # starts with a uint8 -> int8 QUANTIZE that TFLite runs with a scalar kernel on x86
    # (B0 at 224 px, raw invoke: 1.57 ms with uint8 input, 1.38 with int8).
    int8_io_type: str = "int8"
    onnx_opset: int = 17
    parity_batch_size: int = 8

    def __post_init__(self):
        object.__setattr__(self, "formats", parse_formats(self.formats))
        if self.num_steps < 1:
            raise ExportError(f"--num_steps must be at least 1, got {self.num_steps}.")
        if self.num_eval_images < 1:
            raise ExportError(f"--num_eval_images must be at least 1, got {self.num_eval_images}.")
        if self.int8_io_type not in ("uint8", "int8"):
            raise ExportError(f"--int8_io_type must be uint8 or int8, got {self.int8_io_type!r}.")
        if self.onnx_opset < ONNX_MIN_OPSET:
            raise ExportError(
                f"--onnx_opset must be {ONNX_MIN_OPSET} or newer, got {self.onnx_opset}.")
        if self.crop_padding is not None and self.crop_padding < 0:
            raise ExportError(f"--crop_padding must be >= 0, got {self.crop_padding}.")
        if self.parity_batch_size < 1:
            raise ExportError("parity_batch_size must be at least 1.")
