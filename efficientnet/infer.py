"""Classify images, measure accuracy or benchmark any exported model (SavedModel, TFLite, ONNX).

    python -m efficientnet.infer --model export/model_int8.tflite --images photos/ cat.jpg
    python -m efficientnet.infer --model export/saved_model --data_dir /data/imagenet
    python -m efficientnet.infer --model export/model.onnx --benchmark --num_threads 2

The format is detected from the path. Images are prepared by the data pipeline's eval path
(decode, centre crop with the model's crop padding, resize); normalisation is inside the model.
`model_info.json` / `labels.txt` written by `python -m efficientnet.export` next to the model are
picked up automatically; `--labels_file` and `--model_name` override them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time

import numpy as np

from efficientnet import quiet_tensorflow_logs
from efficientnet.export.config import LABELS_FILE, MODEL_INFO_FILE, ExportError, FlagParser

log = logging.getLogger("efficientnet.infer")


class NothingReadable(ExportError):
    """Every image given was skipped (the CLI exits 1)."""


@dataclasses.dataclass(frozen=True)
class InferConfig:
    """One inference run; the CLI flags map one-to-one onto these fields."""

    model: str
    images: tuple[str, ...] = ()
    data_dir: str | None = None
    num_images: int | None = None  # validation images to score (default: all)
    labels_file: str | None = None
    model_name: str | None = None  # only for its crop padding / interpolation
    num_label_classes: int | None = None  # default: the model's number of classes
    top_k: int = 5
    batch_size: int = 32
    benchmark: bool = False
    benchmark_runs: int = 50  # timed batch-1 runs; batch-32 runs are a fifth of it (at least 3)
    num_threads: int | None = None  # default: every core
    max_image_pixels: int | None = None  # default: the data pipeline's limit


def run_infer(config: InferConfig, out=print) -> dict:
    """Runs what `config` asks for, prints a human summary with `out`, returns the results."""
    from efficientnet.export import images as image_io
    from efficientnet.export.labels import read_labels
    from efficientnet.export.runtime import detect_format, load_predictor

    if not (config.images or config.data_dir or config.benchmark):
        raise ExportError("Nothing to do: give --images, --data_dir or --benchmark.")
    if config.top_k < 1 or config.batch_size < 1:
        raise ExportError("--top_k and --batch_size must be at least 1.")
    fmt = detect_format(config.model)
    info = _model_info(config.model)
    image_paths = image_io.list_image_files(list(config.images)) if config.images else []
    if config.images and not image_paths:
        raise ExportError(f"No image files found in {', '.join(config.images)}.")
    if config.data_dir:
        image_io.check_data_dir(config.data_dir)

    predictor = load_predictor(config.model, num_threads=config.num_threads)
    crop_padding, resize_method = _preprocessing(config, info)
    labels_file = config.labels_file or info.get("labels_path")
    class_names = read_labels(labels_file, predictor.num_classes) if labels_file else None
    results: dict = {"model": config.model, "format": fmt, "image_size": predictor.image_size,
                     "num_classes": predictor.num_classes, "threads": predictor.num_threads}
    out(f"{config.model}: {fmt}, {predictor.image_size}x{predictor.image_size} input, "
        f"{predictor.num_classes} classes, {predictor.num_threads} threads")

    if image_paths:
        pixels, readable, failures = image_io.read_image_files(
            image_paths, predictor.image_size, crop_padding, resize_method,
            config.max_image_pixels)
        for path, reason in failures:
            out(f"skipped {path}: {reason}")
        probabilities = _predict(predictor, pixels, config.batch_size)
        results["predictions"] = []
        for path, row in zip(readable, probabilities):
            top = np.argsort(-row)[: config.top_k]
            entries = [{"class": int(c), "name": class_names[c] if class_names else str(int(c)),
                        "probability": float(row[c])} for c in top]
            results["predictions"].append({"file": path, "top": entries})
            out(f"{path}: " + ", ".join(f"{e['name']} ({e['probability']:.3f})" for e in entries))
        results["skipped"] = [{"file": path, "reason": reason} for path, reason in failures]
        out(f"classified {len(readable)} image(s), skipped {len(failures)} unreadable")
        if not readable:
            raise NothingReadable(f"None of the {len(failures)} image(s) could be read (reasons "
                                  "above): nothing classified")

    if config.data_dir:
        num_label_classes = config.num_label_classes or predictor.num_classes
        limit = config.num_images or -1  # take(-1): every record
        pixels, labels = image_io.read_split(config.data_dir, "validation", predictor.image_size,
                                             num_label_classes, limit, crop_padding, resize_method)
        probabilities = _predict(predictor, pixels, config.batch_size)
        top = np.argsort(-probabilities, axis=-1)[:, :5]
        results["accuracy"] = {
            "num_images": int(len(labels)),
            "top1": float(np.mean(top[:, 0] == labels)) if len(labels) else 0.0,
            "top5": float(np.mean(np.any(top == labels[:, None], axis=-1))) if len(labels) else 0.0,
        }
        acc = results["accuracy"]
        out(f"validation ({acc['num_images']} images): top-1 {acc['top1']:.4f}  "
            f"top-5 {acc['top5']:.4f}")

    if config.benchmark:
        results["benchmark"] = benchmark(predictor, config.benchmark_runs)
        bench = results["benchmark"]
        out(f"benchmark ({bench['threads']} threads, warm-up excluded): batch 1 latency "
            f"p50 {bench['batch1_p50_ms']:.2f} ms, p90 {bench['batch1_p90_ms']:.2f} ms; "
            f"batch {bench['batch_size']}: {bench['images_per_second']:.1f} images/s")
    return results


def benchmark(predictor, runs: int = 50, batch_size: int = 32, warmup: int = 3) -> dict:
    """Latency at batch 1 (p50/p90) and throughput at `batch_size`; warm-up runs are not timed."""
    from efficientnet.export.images import synthetic_images

    size = predictor.image_size
    single = synthetic_images(1, size, seed=0)
    batch = synthetic_images(batch_size, size, seed=1)
    for _ in range(warmup):
        predictor.predict(single)
    latencies = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        predictor.predict(single)
        latencies.append((time.perf_counter() - start) * 1000)
    predictor.predict(batch)  # warm-up at the new batch size (tensor resizes, allocations)
    batch_runs = max(3, runs // 5)
    start = time.perf_counter()
    for _ in range(batch_runs):
        predictor.predict(batch)
    elapsed = time.perf_counter() - start
    return {
        "threads": predictor.num_threads,
        "batch1_runs": len(latencies),
        "batch1_p50_ms": float(np.percentile(latencies, 50)),
        "batch1_p90_ms": float(np.percentile(latencies, 90)),
        "batch_size": batch_size,
        "batch_runs": batch_runs,
        "images_per_second": batch_size * batch_runs / elapsed,
    }


def _predict(predictor, pixels, batch_size):
    from efficientnet.export.runtime import predict_batched

    return predict_batched(predictor, pixels, batch_size)


def _model_info(model_path: str) -> dict:
    # `model_info.json` sits in the export directory: next to a file, or above a SavedModel dir.
    model_path = os.path.abspath(model_path)
    for folder in (os.path.dirname(model_path), model_path):
        path = os.path.join(folder, MODEL_INFO_FILE)
        if os.path.isfile(path):
            with open(path) as f:
                info = json.load(f)
            labels = os.path.join(folder, info.get("labels_file") or LABELS_FILE)
            if info.get("labels_file") and os.path.isfile(labels):
                info["labels_path"] = labels
            return info
    return {}


def _preprocessing(config, info) -> tuple[int, str]:
    if config.model_name:
        from efficientnet.models import get_spec

        try:
            spec = get_spec(config.model_name)
        except ValueError as error:
            raise ExportError(str(error)) from error
        return spec.crop_padding, spec.interpolation
    return int(info.get("crop_padding", 32)), info.get("interpolation", "bicubic")


def parse_flags(argv: list[str]) -> InferConfig:
    """Command-line flags -> `InferConfig` (argparse errors exit with status 2)."""
    parser = FlagParser(
        prog="python -m efficientnet.infer",
        description="Classify images with, score, or benchmark an exported EfficientNet.")
    parser.add_argument("--model", required=True,
                        help="SavedModel directory, .tflite or .onnx file")
    parser.add_argument("--images", nargs="+", default=[],
                        help="image files and/or directories (comma lists work too)")
    parser.add_argument("--data_dir", help="TFRecord dir: top-1/top-5 over validation-*")
    parser.add_argument("--num_images", type=int, help="validation images to score (default all)")
    parser.add_argument("--labels_file", help="class names, one per line")
    parser.add_argument("--model_name", help="model name, for its crop padding / interpolation")
    parser.add_argument("--num_label_classes", type=int,
                        help="1001 keeps TFRecord labels as they are; default: model classes")
    parser.add_argument("--top_k", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--benchmark", action=argparse.BooleanOptionalAction, default=False,
                        help="latency at batch 1 and images/s at batch 32")
    parser.add_argument("--benchmark_runs", type=int, default=50)
    parser.add_argument("--num_threads", type=int, help="CPU threads (default: all cores)")
    parser.add_argument("--max_image_pixels", type=int,
                        help="refuse images whose header announces more pixels, before decoding "
                             "(default 300000000, as the converter)")
    args = parser.parse_args(argv)
    images = tuple(p for item in args.images for p in item.split(",") if p)
    return InferConfig(
        model=args.model, images=images, data_dir=args.data_dir, num_images=args.num_images,
        labels_file=args.labels_file, model_name=args.model_name,
        num_label_classes=args.num_label_classes, top_k=args.top_k, batch_size=args.batch_size,
        benchmark=args.benchmark, benchmark_runs=args.benchmark_runs,
        num_threads=args.num_threads, max_image_pixels=args.max_image_pixels,
    )


def _main(argv: list[str]) -> int:
    from efficientnet.cli import EXIT_BAD_INPUT, EXIT_RUNTIME, CommandError

    config = parse_flags(argv)
    quiet_tensorflow_logs()
    try:
        run_infer(config)
    except NothingReadable as error:
        raise CommandError(str(error), EXIT_RUNTIME) from error
    except ExportError as error:
        raise CommandError(str(error), EXIT_BAD_INPUT) from error
    return 0


def main(argv: list[str] | None = None) -> int:
    """The CLI inside efficientnet.cli's error boundary: a bad model, flag or file exits 2,
    every image unreadable exits 1."""
    from efficientnet import cli

    return cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
