"""Evaluation: top-1 / top-5 / loss across replicas, and `--mode=eval` over saved checkpoints."""

from __future__ import annotations

import dataclasses
import time

import keras
import tensorflow as tf

from efficientnet.config.schema import ConfigError, Experiment
from efficientnet.train import checkpointing, distribute, inputs
from efficientnet.train.reporting import Reporter
from efficientnet.train.setup import DatasetFn, ModelFn, default_model_fn, image_sizes


@dataclasses.dataclass
class RunResult:
    """What a run returns: its last step, loss and evaluation, and one record per loop."""

    global_step: int
    loss: float | None = None
    eval_results: dict | None = None
    history: list = dataclasses.field(default_factory=list)  # per-loop train records


class Evaluator:
    """Top-1 / top-5 / loss over every image of an eval dataset, across replicas."""

    def __init__(self, model: keras.Model, strategy, num_classes: int):
        self.model = model
        self.strategy = strategy
        k = min(5, num_classes)

        def replica_fn(images, labels):
            logits = tf.cast(model(images, training=False), tf.float32)
            if labels.shape.rank == 2:  # one-hot labels
                labels = tf.argmax(labels, axis=-1)
            labels = tf.cast(labels, tf.int32)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            top1 = tf.math.in_top_k(labels, logits, 1)
            top5 = tf.math.in_top_k(labels, logits, k)
            return tf.stack([
                tf.reduce_sum(loss), tf.reduce_sum(tf.cast(top1, tf.float32)),
                tf.reduce_sum(tf.cast(top5, tf.float32)), tf.cast(tf.size(labels), tf.float32)])

        @tf.function(reduce_retracing=True)
        def step(batch):
            sums = strategy.run(replica_fn, args=batch)
            return strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None)

        self._step = step

    def __call__(self, dataset_fn: DatasetFn, global_step: int) -> dict:
        start = time.time()
        dataset = self.strategy.distribute_datasets_from_function(dataset_fn)
        totals = tf.zeros([4], tf.float64)
        for batch in dataset:
            totals += tf.cast(self._step(batch), tf.float64)
        loss_sum, top1, top5, count = (float(x) for x in totals.numpy())
        if count == 0:
            raise ConfigError("The evaluation data is empty (no validation-* records?)")
        return {
            "top_1_accuracy": top1 / count,
            "top_5_accuracy": top5 / count,
            "loss": loss_sum / count,
            "global_step": int(global_step),
            "num_images": int(count),
            "eval_time_s": round(time.time() - start, 3),
        }


def evaluate_checkpoints(config: Experiment, strategy, spec=None, model_fn: ModelFn | None = None,
                         eval_dataset_fn: DatasetFn | None = None) -> RunResult:
    """mode=eval: evaluates the latest checkpoint (or, with eval_watch, each new one)."""
    is_chief, _, _ = distribute.task_info(strategy)
    reporter = Reporter(config.train.model_dir, is_chief)
    _, eval_size = image_sizes(config, spec)
    with strategy.scope():
        model = (model_fn or default_model_fn)(config, eval_size)
    evaluator = Evaluator(model, strategy, config.model.num_label_classes)
    eval_fn = eval_dataset_fn or inputs.eval_dataset_fn(config, spec, eval_size, strategy)
    result = RunResult(global_step=0)

    def evaluate(path: str) -> None:
        step = checkpointing.load_weights_for_inference(model, path, use_ema=True)
        result.global_step = step
        result.eval_results = evaluator(eval_fn, step)
        reporter.eval(result.eval_results)

    try:
        if not config.train.eval_watch:
            latest = checkpointing.latest_readable_checkpoint(config.train.model_dir,
                                                              say=reporter.print)
            if latest is None:
                raise FileNotFoundError(
                    f"No checkpoint in --model_dir {config.train.model_dir!r} to evaluate")
            evaluate(latest)
            return result
        for path in tf.train.checkpoints_iterator(config.train.model_dir,
                                                  timeout=config.train.eval_timeout):
            evaluate(path)
            if result.global_step >= config.train.train_steps:
                break
        return result
    finally:
        reporter.close()
