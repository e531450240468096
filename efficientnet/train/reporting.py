"""Progress reporting of a run: one line per loop on stdout, metrics.jsonl, TensorBoard."""

from __future__ import annotations

import datetime
import json
import os
import sys
import time

import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def format_eta(seconds: float) -> str:
    return str(datetime.timedelta(seconds=max(0, int(round(seconds)))))


def _scalar(tag: str, value: float, step: int) -> None:
    """tf.summary.scalar without the tensorboard package (tensorflow-cpu does not ship it)."""
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step,
                     metadata=metadata.SerializeToString())


class Reporter:
    """Writes progress; every method is a no-op on non-chief workers (except `error`)."""

    def __init__(self, model_dir: str | None, is_chief: bool = True, stream=None):
        self.model_dir = model_dir
        self.is_chief = is_chief and bool(model_dir)
        self.stream = stream or sys.stdout
        self._writers: dict[str, tf.summary.SummaryWriter] = {}
        if self.is_chief:
            tf.io.gfile.makedirs(model_dir)

    def print(self, message: str) -> None:
        if self.is_chief:
            print(message, file=self.stream, flush=True)

    def _writer(self, name: str):
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(os.path.join(self.model_dir, name))
        return self._writers[name]

    def _jsonl(self, record: dict) -> None:
        with open(os.path.join(self.model_dir, "metrics.jsonl"), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def loop(self, *, step: int, train_steps: int, epoch: int, total_epochs: int, steps: int,
             loop_time: float, global_batch: int, loss: float, lr: float) -> dict:
        """Reports one training loop of `steps` steps that took `loop_time` seconds."""
        per_step = loop_time / max(steps, 1)
        images_per_sec = steps * global_batch / max(loop_time, 1e-9)
        eta = per_step * (train_steps - step)
        record = {
            "kind": "train", "time": time.time(), "step": step, "train_steps": train_steps,
            "epoch": epoch, "total_epochs": total_epochs, "loop_time_s": round(loop_time, 4),
            "per_step_ms": round(per_step * 1000, 3), "images_per_sec": round(images_per_sec, 2),
            "loss": loss, "lr": lr, "eta_s": round(eta, 1),
        }
        if not self.is_chief:
            return record
        width = len(str(total_epochs))
        self.print(
            f"epoch: [{epoch:>{width}}/{total_epochs}], step: {step}/{train_steps}, "
            f"loop time: {loop_time:.1f} s, per step: {per_step * 1000:.1f} ms, "
            f"images/s: {images_per_sec:.1f}, loss: {loss:.4g}, lr: {lr:.4g}, "
            f"eta: {format_eta(eta)}")
        self._jsonl(record)
        with self._writer("train").as_default():
            _scalar("loss", loss, step)
            _scalar("learning_rate", lr, step)
            _scalar("images_per_sec", images_per_sec, step)
            _scalar("epoch", epoch, step)
        return record

    def eval(self, results: dict) -> None:
        if not self.is_chief:
            return
        self.print(
            f"eval: step: {results['global_step']}, top-1: {results['top_1_accuracy']:.4f}, "
            f"top-5: {results['top_5_accuracy']:.4f}, loss: {results['loss']:.4g}, "
            f"images: {results['num_images']}, eval time: {results.get('eval_time_s', 0):.1f} s")
        self._jsonl({"kind": "eval", "time": time.time(), **results})
        step = results["global_step"]
        with self._writer("eval").as_default():
            _scalar("top_1_accuracy", results["top_1_accuracy"], step)
            _scalar("top_5_accuracy", results["top_5_accuracy"], step)
            _scalar("loss", results["loss"], step)
        path = os.path.join(self.model_dir, "eval_results.json")
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
        os.replace(path + ".tmp", path)

    def drop_records_after(self, step: int) -> int:
        """Removes the metrics.jsonl records of steps after `step` (a run killed after its last
        checkpoint wrote them; its resume writes them again). Returns how many were removed."""
        path = os.path.join(self.model_dir or "", "metrics.jsonl")
        if not self.is_chief or not os.path.isfile(path):
            return 0
        with open(path, encoding="utf-8") as handle:
            lines = handle.readlines()
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
                later = int(record.get("step", record.get("global_step", -1))) > step
            except (ValueError, TypeError, AttributeError):
                later = True  # a line cut short by the kill
            if not later:
                kept.append(line if line.endswith("\n") else line + "\n")
        if len(kept) == len(lines):
            return 0
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            handle.writelines(kept)
        os.replace(path + ".tmp", path)
        return len(lines) - len(kept)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.flush()
            writer.close()
        self._writers.clear()
