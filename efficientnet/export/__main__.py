"""`python -m efficientnet.export`: checkpoint -> SavedModel, TFLite fp32/fp16/int8, ONNX + report.

    python -m efficientnet.export --model_name=efficientnet-b0 --model_dir=/tmp/b0 \\
        --export_dir=/tmp/b0/export --data_dir=/data/imagenet --formats=saved_model,tflite_int8
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from efficientnet import quiet_tensorflow_logs
from efficientnet.cli import CommandError
from efficientnet.export.config import FORMATS, REPORT_FILE, ExportConfig, ExportError, FlagParser


def parse_flags(argv: list[str]) -> ExportConfig:
    """Command-line flags -> `ExportConfig` (argparse errors exit with status 2)."""
    parser = FlagParser(
        prog="python -m efficientnet.export",
        description="Export the latest checkpoint of --model_dir in every format, with parity "
                    "and accuracy per format in <export_dir>/" + REPORT_FILE + ".")
    parser.add_argument("--model_name", required=True,
                        help="e.g. efficientnet-b0; may be left out when "
                             "<model_dir>/config.json names it (the run's classes, size and "
                             "eval preprocessing are read from there too; flags win)")
    parser.add_argument("--model_dir", required=True, help="training directory (checkpoints)")
    parser.add_argument("--export_dir", help="output directory (default: <model_dir>/export)")
    parser.add_argument("--formats", default="all",
                        help=f"comma list of {','.join(FORMATS)} (default: all)")
    parser.add_argument("--num_label_classes", type=int,
                        help="classes of the trained head (default: the model's, 1000)")
    parser.add_argument("--image_size", type=int, help="input resolution (default: eval size)")
    parser.add_argument("--data_dir", help="TFRecords: int8 calibration + accuracy per format")
    parser.add_argument("--num_steps", type=int, default=100,
                        help="int8 calibration steps, one image each")
    parser.add_argument("--num_eval_images", type=int, default=500,
                        help="validation images for the accuracy check")
    parser.add_argument("--labels_file", help="class names, one per line, line i = class i "
                        "(default: labels.txt of --data_dir when it names every class)")
    parser.add_argument("--resize_method", choices=("bicubic", "bicubic_tf1", "bilinear"),
                        help="eval resize inside serving_bytes (default: the model's, bicubic)")
    parser.add_argument("--crop_padding", type=int,
                        help="eval centre crop padding (default: the model's, 32)")
    parser.add_argument("--use_ema", action=argparse.BooleanOptionalAction, default=True,
                        help="export the EMA weights (default) or the raw ones (--no-use_ema)")
    parser.add_argument("--nouse_ema", dest="use_ema", action="store_false",
                        help=argparse.SUPPRESS)  # absl spelling
    parser.add_argument("--int8_io_type", choices=("uint8", "int8"), default="int8",
                        help="input/output type of the full-integer TFLite model (default int8, "
                             "pixel - 128: faster on XNNPACK; uint8 adds a conversion op)")
    parser.add_argument("--onnx_opset", type=int, default=17)
    args = parser.parse_args(argv)
    return ExportConfig(
        model_name=args.model_name, model_dir=args.model_dir,
        export_dir=args.export_dir or os.path.join(args.model_dir, "export"),
        formats=args.formats, num_label_classes=args.num_label_classes,
        image_size=args.image_size, data_dir=args.data_dir, num_steps=args.num_steps,
        num_eval_images=args.num_eval_images, labels_file=args.labels_file,
        resize_method=args.resize_method, crop_padding=args.crop_padding,
        use_ema=args.use_ema, int8_io_type=args.int8_io_type, onnx_opset=args.onnx_opset,
    )


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (test capture replaces it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


def configure_logging() -> None:
    """Progress lines on stderr, independent of absl / TensorFlow logging."""
    quiet_tensorflow_logs()
    logger = logging.getLogger("efficientnet")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def with_saved_flags(argv: list[str]) -> list[str]:
    """`argv` after the model settings of the run in its --model_dir (`config.json`: model,
    classes, size, eval preprocessing), so a run exports as it evaluated; flags given win."""
    from efficientnet.config import run_file

    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--model_dir")
    model_dir = probe.parse_known_args(argv)[0].model_dir
    return [*run_file.saved_export_flags(model_dir), *argv] if model_dir else list(argv)


def _main(argv: list[str]) -> int:
    from efficientnet.config import ConfigError

    try:
        config = parse_flags(with_saved_flags(argv))
    except (ExportError, ConfigError) as error:
        raise CommandError(str(error), 2) from error
    configure_logging()
    from efficientnet.export.exporter import run_export

    try:
        report = run_export(config)
    except ExportError as error:
        raise CommandError(str(error), 1) from error
    print(f"exported {', '.join(report['formats'])} to {config.export_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The CLI inside efficientnet.cli's error boundary: bad flags exit 2, a failed export 1."""
    from efficientnet import cli

    return cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
