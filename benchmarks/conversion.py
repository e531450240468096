"""Conversion speed per CPU core: `python -m tfrecord_tools folder` as users run it (timed by
its `conversion_report.json`) against the TF-models `build_imagenet_data.py` approach (threads,
one image at a time, a TensorFlow decode of each), on 10,000 files (2,000 ImageNet-like JPEGs, each
hard-linked 5 times, so that a fixed start-up does not weigh). Statistic: the median over
interleaved rounds of ours / baseline images/s of the same round.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import common
from benchmarks.input_pipeline import HEIGHT, WIDTH, make_images

COPIES = 5


def baseline_convert(paths: list[str], output_directory: str, num_threads: int) -> float:
    """images/s of the TF-models approach: threads, one image at a time, TF decode to check."""
    import tensorflow as tf

    def feature(value):
        if isinstance(value, int):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def work(thread_index, thread_paths):
        path = os.path.join(output_directory, f"train-{thread_index:05d}-of-{num_threads:05d}")
        with tf.io.TFRecordWriter(path) as writer:
            for label, filename in thread_paths:
                with tf.io.gfile.GFile(filename, "rb") as f:
                    data = f.read()
                image = tf.io.decode_jpeg(data, channels=3)
                example = tf.train.Example(features=tf.train.Features(feature={
                    "image/height": feature(int(image.shape[0])),
                    "image/width": feature(int(image.shape[1])),
                    "image/colorspace": feature(b"RGB"), "image/channels": feature(3),
                    "image/class/label": feature(label), "image/class/synset": feature(b"class"),
                    "image/format": feature(b"JPEG"),
                    "image/filename": feature(os.path.basename(filename).encode()),
                    "image/encoded": feature(data)}))
                writer.write(example.SerializeToString())

    labelled = [(1 + i % 4, p) for i, p in enumerate(paths)]
    threads = [threading.Thread(target=work, args=(t, labelled[t::num_threads]))
               for t in range(num_threads)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(paths) / (time.perf_counter() - start)


def ours_convert(input_directory: str, output_directory: str, workers: int) -> float:
    """images/s of `python -m tfrecord_tools folder` over the conversion its report times, in
    its own process (this one has TensorFlow loaded, which the CLI never needs)."""
    subprocess.run([sys.executable, "-m", "tfrecord_tools", "folder", "--quiet",
                    f"--input_directory={input_directory}",
                    f"--output_directory={output_directory}", "--validation_fraction=0",
                    f"--train_shards={workers}", f"--num_workers={workers}"],
                   check=True, capture_output=True, text=True)
    report = json.loads(Path(output_directory, "conversion_report.json").read_text())
    return report["written"]["train"] / report["seconds"]


def linked_copies(source_directory: str, directory: str, copies: int) -> list[str]:
    """Every file under `source_directory` `copies` times under `directory`, in the same class
    folders (hard links; copies where the file system has none); returns the new paths."""
    paths = []
    for root, _, files in sorted(os.walk(source_directory)):
        folder = os.path.join(directory, os.path.relpath(root, source_directory))
        os.makedirs(folder, exist_ok=True)
        for copy in range(copies):
            for name in sorted(files):
                source, target = os.path.join(root, name), os.path.join(folder, f"{copy}_{name}")
                try:
                    os.link(source, target)
                except OSError:
                    shutil.copyfile(source, target)
                paths.append(target)
    return paths


def run(quick: bool = False) -> dict:
    num_images, copies, rounds = (400, 1, 1) if quick else (2000, COPIES, 3)
    workers = common.cores()
    rates: dict = {"ours": [], "baseline": []}
    with tempfile.TemporaryDirectory() as tmp:
        make_images(os.path.join(tmp, "images"), num_images)
        source = os.path.join(tmp, "linked")
        paths = linked_copies(os.path.join(tmp, "images"), source, copies)
        for _ in range(rounds):  # each output is deleted after its reading
            with tempfile.TemporaryDirectory(dir=tmp) as output:
                rates["baseline"].append(baseline_convert(paths, output, workers))
            with tempfile.TemporaryDirectory(dir=tmp) as output:
                rates["ours"].append(ours_convert(source, output, workers))
    best = {name: round(max(values) / workers, 1) for name, values in rates.items()}
    return {
        "cores": workers, "conversion_images": len(paths), "conversion_repeats": rounds,
        "source_images": f"{num_images} photo-like JPEGs {WIDTH}x{HEIGHT} q96, each {copies} times",
        "conversion_images_per_sec_per_core": {
            "tfrecord_tools": best["ours"], "baseline (TF-models style threads)": best["baseline"]},
        "conversion_images_per_sec_per_round": {k: [round(v, 1) for v in values]
                                                for k, values in rates.items()},
        "conversion_speedup_paired_median": round(
            common.paired_ratio(rates, "ours", "baseline"), 2),
    }
