"""What AutoAugment and RandAugment cost in the training input pipeline, per CPU core.

`build_dataset` at 224 px, batch 32, on ImageNet-like JPEGs (500x375, natural image spectrum,
quality 96, 4:4:4, ~112 KB): plain, + AutoAugment (v0), + RandAugment (2 layers, magnitude 10),
in interleaved rounds in a fresh process that imports efficientnet first, as training does.
Statistic: the median over rounds of 1 - augmented / plain images/s of the same round.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import numpy as np

from benchmarks import common

WIDTH, HEIGHT, SIZE, BATCH = 500, 375, 224, 32
AUGMENTS = {"plain": None, "autoaugment": "autoaugment", "randaugment": "randaugment"}


def _photo_like_image(rng, width: int, height: int) -> np.ndarray:
    """uint8 [height, width, 3] with a natural image's 1/f^1.4 amplitude spectrum and
    correlated colour channels."""
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]
    frequency = np.sqrt(fx**2 + fy**2)
    frequency[0, 0] = 1.0
    channels = []
    for _ in range(3):
        spectrum = (rng.normal(size=frequency.shape)
                    + 1j * rng.normal(size=frequency.shape)) / frequency**1.4
        spectrum[0, 0] = 0.0
        channel = np.fft.irfft2(spectrum, s=(height, width))
        channels.append(channel / channel.std())
    mixed = np.stack(channels, -1) @ (np.eye(3) + 0.3 * rng.normal(size=(3, 3))).T
    return np.clip(128 + 24 * mixed / mixed.std(), 0, 255).astype(np.uint8)


def make_images(directory: str, count: int, classes: int = 4) -> list[str]:
    """Photo-like JPEGs encoded as ImageNet's are (quality 96, no chroma subsampling: ~112 KB,
    ImageNet's train set averages ~110 KB), in class folders; returns their paths."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        folder = os.path.join(directory, f"class{i % classes}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{i:05d}.jpg")
        Image.fromarray(_photo_like_image(rng, WIDTH, HEIGHT)).save(path, "JPEG", quality=96,
                                                                     subsampling=0)
        paths.append(path)
    return paths


def pipeline_reading(pattern: str, augment_name: str | None, batches: int) -> float:
    """images/s of a training pipeline over `batches` batches after warm-up."""
    import tensorflow as tf

    from efficientnet.data import DataConfig, build_dataset
    from efficientnet.models import get_spec

    # Seeded: every run draws the same crops and augmentation ops, so runs compare.
    config = DataConfig(image_size=SIZE, num_label_classes=4, augment_name=augment_name,
                        shuffle_buffer=256, seed=0)
    iterator = iter(build_dataset(pattern, True, BATCH, get_spec("efficientnet-b0"), config))
    for _ in range(3):  # warm-up: tracing, autotune, shuffle buffer fill
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        images, _ = next(iterator)
    rate = batches * BATCH / (time.perf_counter() - start)
    tf.debugging.assert_all_finite(images, "pipeline output")
    return rate


def interleaved_rounds(pattern: str, batches: int, rounds: int) -> dict:
    """{pipeline: [images/s of each round]}: each round reads every AUGMENTS pipeline in turn."""
    rates: dict = {name: [] for name in AUGMENTS}
    for _ in range(rounds):
        for name, augment_name in AUGMENTS.items():
            rates[name].append(pipeline_reading(pattern, augment_name, batches))
    return rates


def summarize(rates: dict, num_cores: int) -> dict:
    """Best images/s per core of each pipeline and each augmentation's paired cost."""
    return {
        "pipeline_images_per_sec_per_core": {name: round(max(values) / num_cores, 1)
                                             for name, values in rates.items()},
        "augmentation_cost_paired_median": {
            name: round(1 - common.paired_ratio(rates, name, "plain"), 3)
            for name in AUGMENTS if name != "plain"},
        "pipeline_images_per_sec_per_round": {name: [round(v, 1) for v in values]
                                              for name, values in rates.items()},
    }


def run(quick: bool = False) -> dict:
    from tfrecord_tools import convert_folder

    num_images, batches, rounds = (200, 8, 1) if quick else (1000, 200, 7)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(os.path.join(tmp, "images"), num_images)
        mean_kb = np.mean([os.path.getsize(p) for p in paths]) / 1e3
        convert_folder(os.path.join(tmp, "images"), os.path.join(tmp, "records"),
                       validation_fraction=0, quiet=True)
        pattern = os.path.join(tmp, "records", "train-*")
        # A fresh process: the CPU XLA setting must come before TensorFlow starts.
        rates = common.json_line([sys.executable, "-m", "benchmarks.input_pipeline",
                                  f"--records={pattern}", f"--batches={batches}",
                                  f"--rounds={rounds}"], "the input pipelines")
    return {"cores": common.cores(), "image_size": SIZE, "batch_size": BATCH,
            "pipeline_batches": batches, "pipeline_rounds": rounds,
            "pipeline_images": f"{num_images} photo-like JPEGs (ImageNet-encoded, "
                               f"{mean_kb:.0f} KB on average)",
            **summarize(rates, common.cores())}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="the pipelines' interleaved rounds on RECORDS, "
                                     "in a process set up as training (one JSON line)")
    parser.add_argument("--records", required=True, help="TFRecord file pattern")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import efficientnet  # noqa: F401  (first: its TensorFlow settings, as in training)

    print(json.dumps(interleaved_rounds(args.records, args.batches, args.rounds)))
