"""Accuracy on real data, through the project's own command lines.

1. Fashion-MNIST -> TFRecords (`python -m tfrecord_tools fashion-mnist`).
2. efficientnet-b0 from scratch (`python -m efficientnet.main --mode=train_and_eval`), top-1 on
   all 10,000 validation images; the curve comes from `metrics.jsonl`.
3. Transfer: pretrain on classes 0-4, then fine-tune on classes 5-9 with
   `--restore_path=<pretrain dir> --restore_exclude=head/dense`, against training 5-9 from scratch
   for the same steps. Both curves are recorded; the restored run should win.

    python -m benchmarks.accuracy [--work_dir /tmp/fmnist] [--image_size 48] [--epochs 9]
                                  [--transfer_epochs 2] [--quick]

The transfer runs go first (they are short); the result file is rewritten after every run, so
an interrupted benchmark still leaves what it measured.

Writes `benchmarks/results/accuracy.json` and `accuracy.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import common

# Fashion-MNIST's 28 px images upsampled. Probed on a GPU with the same model under JAX
# (benchmarks/gpu_jax.py fashion, no EMA, 8 epochs): 32 px 87-88%, 48 px 90.8%, 64 px 91.4%
# after 10 epochs; 48 px costs 2.2x 32 px per image on CPU, 64 px 3.1x.
IMAGE_SIZE = 48


def _run(args: list[str], log: Path) -> float:
    """Runs a command, teeing its output into `log`; returns wall seconds. Fails loudly."""
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


def write_subset(source: Path, target: Path, classes: list[int]) -> int:
    """Copies the records whose 0-based class is in `classes`, relabelled 1..len(classes)."""
    import tensorflow as tf

    if (target / "done").exists():
        return int((target / "done").read_text())
    target.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in ("train", "validation"):
        files = sorted(tf.io.gfile.glob(str(source / f"{split}-*")))
        out = target / f"{split}-00000-of-00001"
        written = 0
        with tf.io.TFRecordWriter(str(out)) as writer:
            for record in tf.data.TFRecordDataset(files):
                example = tf.train.Example.FromString(record.numpy())
                label = example.features.feature["image/class/label"].int64_list.value[0] - 1
                if label not in classes:
                    continue
                example.features.feature["image/class/label"].int64_list.value[0] = (
                    classes.index(label) + 1)
                writer.write(example.SerializeToString())
                written += 1
        counts[split] = written
    names = (source / "labels.txt").read_text().splitlines()
    (target / "labels.txt").write_text("\n".join(names[c] for c in classes) + "\n")
    (target / "done").write_text(str(counts["train"]))
    return counts["train"]


def train(data: Path, model_dir: Path, *, classes: int, num_train: int, steps: int,
          steps_per_eval: int, batch: int, log: Path, image_size: int, warmup_epochs: float,
          extra=()) -> dict:
    """Runs train_and_eval; returns {"curve": [(step, top1)], "final": eval results, "wall"}."""
    args = [
        sys.executable, "-m", "efficientnet.main", "--model_name=efficientnet-b0",
        f"--data_dir={data}", f"--model_dir={model_dir}", "--mode=train_and_eval",
        f"--image_size={image_size}", f"--num_label_classes={classes}",
        f"--num_train_images={num_train}", f"--train_batch_size={batch}",
        "--eval_batch_size=500", f"--train_steps={steps}", f"--steps_per_eval={steps_per_eval}",
        f"--iterations_per_loop={min(100, steps_per_eval)}",
        # A short CPU run: a short warm-up and a cosine decay instead of 350 TPU epochs,
        # and an EMA that averages over the last few hundred steps, not 10,000.
        "--lr_schedule=cosine", f"--warmup_epochs={warmup_epochs:g}",
        "--moving_average_decay=0.999",
        "--base_learning_rate=0.016", "--crop_padding=0", "--min_crop_area=0.5",
        *extra,
    ]
    wall = _run(args, log)
    curve, final = [], None
    for line in (model_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "eval":
            curve.append((record["global_step"], record["top_1_accuracy"]))
            final = record
    return {"curve": curve, "final": final, "wall_seconds": round(wall, 1), "command": args[1:]}


def run(work_dir: str, epochs: float, transfer_epochs: float, batch: int, quick: bool,
        image_size: int = IMAGE_SIZE) -> dict:
    work = Path(work_dir)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    data = convert(work, logs)
    result = {"image_size": image_size, "batch": batch, "model": "efficientnet-b0",
              "epochs": epochs, "transfer_epochs": transfer_epochs, "quick": quick,
              "summary": []}

    def warmup(run_epochs: float) -> float:  # a fifth of the run, at most one epoch
        return round(min(1.0, run_epochs / 5), 3)

    def save() -> None:
        _plot(result)
        common.write_result("accuracy", result)

    first, second = work / "classes_0_4", work / "classes_5_9"
    n_first = write_subset(data, first, [0, 1, 2, 3, 4])
    n_second = write_subset(data, second, [5, 6, 7, 8, 9])
    pre_steps = int(transfer_epochs * n_first / batch)
    fine_steps = int(transfer_epochs * n_second / batch)
    every = max(1, fine_steps // 6)
    common_args = {"batch": batch, "image_size": image_size,
                   "warmup_epochs": warmup(transfer_epochs)}
    result["pretrain_0_4"] = train(
        first, work / "pretrain_0_4", classes=5, num_train=n_first, steps=pre_steps,
        steps_per_eval=pre_steps, log=logs / "pretrain.log", **common_args)
    result["finetune_5_9_restored"] = train(
        second, work / "finetune_restored", classes=5, num_train=n_second, steps=fine_steps,
        steps_per_eval=every, log=logs / "finetune_restored.log",
        extra=[f"--restore_path={work / 'pretrain_0_4'}", "--restore_exclude=head/dense"],
        **common_args)
    result["finetune_5_9_scratch"] = train(
        second, work / "finetune_scratch", classes=5, num_train=n_second, steps=fine_steps,
        steps_per_eval=every, log=logs / "finetune_scratch.log", **common_args)
    restore_report = json.loads((work / "finetune_restored" / "restore_report.json").read_text())
    result["restore_report_counts"] = {
        key: len(value) for key, value in restore_report.items() if isinstance(value, list)}
    restored = result["finetune_5_9_restored"]["final"]["top_1_accuracy"]
    scratch = result["finetune_5_9_scratch"]["final"]["top_1_accuracy"]
    result["summary"].append(
        f"transfer 0-4 -> 5-9 ({transfer_epochs:g} epochs each, {fine_steps} fine-tune steps): "
        f"restored {100 * restored:.2f}% vs scratch {100 * scratch:.2f}% top-1")
    result["transfer_restored_wins"] = restored > scratch
    save()

    steps_per_epoch = 60000 // batch
    result["scratch_10_classes"] = train(
        data, work / "b0_full", classes=10, num_train=60000, steps=int(epochs * steps_per_epoch),
        steps_per_eval=steps_per_epoch, log=logs / "b0_full.log",
        **{**common_args, "warmup_epochs": warmup(epochs)})
    top1 = result["scratch_10_classes"]["final"]["top_1_accuracy"]
    result["summary"].insert(0, (
        f"Fashion-MNIST efficientnet-b0 @{image_size}px from scratch, {epochs:g} epochs: top-1 "
        f"{100 * top1:.2f}% on 10,000 images "
        f"({result['scratch_10_classes']['wall_seconds'] / 60:.1f} min on {os.cpu_count()} cores)"))
    result["goal_92_met"] = top1 >= 0.92
    save()
    common.update_readme()
    return result


def _plot(result: dict) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if "scratch_10_classes" in result:
        steps, top1 = zip(*result["scratch_10_classes"]["curve"])
        left.plot(steps, [100 * t for t in top1], marker="o")
    left.axhline(92, color="#c53030", linestyle="--", linewidth=1, label="goal 92%")
    left.set_title("efficientnet-b0 on Fashion-MNIST (10 classes)")
    left.set_xlabel("step")
    left.set_ylabel("top-1 %")
    left.legend()
    for key, label in (("finetune_5_9_restored", "restored from 0-4, head excluded"),
                       ("finetune_5_9_scratch", "from scratch")):
        steps, top1 = zip(*result[key]["curve"])
        right.plot(steps, [100 * t for t in top1], marker="o", label=label)
    right.set_title("classes 5-9: fine-tune vs scratch")
    right.set_xlabel("step")
    right.legend()
    figure.tight_layout()
    figure.savefig(common.RESULTS_DIR / "accuracy.png", dpi=110)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default="/tmp/efficientnet_accuracy")
    parser.add_argument("--image_size", type=int, default=IMAGE_SIZE)
    parser.add_argument("--epochs", type=float, default=9.0, help="10-class run length")
    parser.add_argument("--transfer_epochs", type=float, default=2.0,
                        help="length of the 0-4 pretraining and of each 5-9 run")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="0.2 epochs each: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.transfer_epochs = 0.2, 0.2
    result = run(args.work_dir, args.epochs, args.transfer_epochs, args.batch, args.quick,
                 args.image_size)
    print("\n".join(result["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
