"""The training loop: model, optimizer, EMA and checkpoints of one run, and the compiled steps.

One `tf.function` runs `iterations_per_loop` steps in-graph through `strategy.run` (no
`model.fit`: fit with steps_per_execution breaks under MirroredStrategy, keras-team/keras#19246).
Between loops, `Trainer.train` logs, recomputes BN statistics (precise BN), saves, honours
SIGTERM and evaluates.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time

import keras
import tensorflow as tf

from efficientnet.config.schema import ConfigError, Experiment
from efficientnet.train import (
    checkpointing,
    distribute,
    initial_weights,
    optimization,
    precise_bn,
)
from efficientnet.train.evaluation import Evaluator, RunResult
from efficientnet.train.reporting import Reporter
from efficientnet.train.setup import DatasetFn, ModelFn, default_model_fn, image_sizes


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or Inf loss or gradient; the message names the step and the last
    checkpoint."""


class Preempted(RuntimeError):
    """SIGTERM arrived; a checkpoint was saved before stopping."""


def _all_finite(grads) -> tf.Tensor:
    """True when every gradient value is finite (IndexedSlices: their values)."""
    values = [g.values if isinstance(g, tf.IndexedSlices) else g for g in grads if g is not None]
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in values])


class _SigtermFlag:
    """Turns SIGTERM into a flag checked between loops (main thread only)."""

    def __init__(self):
        self.received = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class Trainer:
    """Model, optimizer, EMA, checkpoint and the compiled loop of one run."""

    def __init__(self, config: Experiment, strategy, spec=None, model_fn: ModelFn | None = None,
                 reporter: Reporter | None = None):
        self.config = config
        self.strategy = strategy
        self.is_chief, self.task_id, self.num_workers = distribute.task_info(strategy)
        self.reporter = reporter or Reporter(config.train.model_dir, self.is_chief)
        self.train_size, self.eval_size = image_sizes(config, spec)
        model_fn = model_fn or default_model_fn
        self.global_batch = config.train.train_batch_size
        self.lr_fn = optimization.learning_rate_fn(config)

        with strategy.scope():
            self.model = model_fn(config, self.train_size)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.optimizer = optimization.build_optimizer(config, lambda: self.lr_fn(self.step))
            self.frozen = initial_weights.freeze(self.model, config.transfer.freeze_pattern)
            frozen_paths = {v.path for v in self.frozen}
            self.trainable = [v for v in self.model.trainable_variables
                              if v.path not in frozen_paths]
            if not self.trainable:
                raise ConfigError("No trainable variables left (does --freeze_pattern match all?)")
            self.optimizer.build(self.trainable)
            self.ema = None
            if config.optimizer.moving_average_decay > 0:
                self.ema = optimization.WeightAverage(
                    checkpointing.weight_dict(self.model), config.optimizer.moving_average_decay)
            self.eval_model = self.model
            if self.eval_size != self.train_size:
                self.eval_model = model_fn(config, self.eval_size)
        self.decayed = optimization.decayed_variables(self.trainable)
        self.checkpoint = checkpointing.make_checkpoint(
            self.model, self.step, self.ema.averages if self.ema else None, self.optimizer)
        model_dir = config.train.model_dir
        directory = (model_dir if self.is_chief
                     else checkpointing.worker_checkpoint_dir(model_dir, self.task_id))
        self.manager = checkpointing.make_manager(
            self.checkpoint, directory, config.train.keep_checkpoint_max)
        self.evaluator = Evaluator(self.eval_model, strategy, config.model.num_label_classes)
        self._loop = self._make_loop()

    def restore_or_initialize(self) -> int:
        """Resumes from model_dir, else applies --restore_path; returns the starting step."""
        return initial_weights.restore_or_initialize(
            self.config, self.checkpoint, self.model, self.ema, self.step, self.reporter,
            self.is_chief)

    # -- the compiled loop ----------------------------------------------------------------------
    def _make_loop(self):
        config, strategy, model = self.config, self.strategy, self.model
        optimizer, trainable, decayed = self.optimizer, self.trainable, self.decayed
        replicas = strategy.num_replicas_in_sync
        global_batch = self.global_batch
        label_smoothing = config.optimizer.label_smoothing
        weight_decay = config.optimizer.weight_decay
        loss_scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

        def forward_backward(images, labels):
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                per_example = optimization.cross_entropy(labels, logits, label_smoothing)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                if weight_decay > 0:
                    loss += weight_decay * optimization.l2_loss(decayed) / replicas
                objective = optimizer.scale_loss(loss) if loss_scaled else loss
            return loss, tape.gradient(objective, trainable)

        if distribute.use_xla(config):
            forward_backward = tf.function(forward_backward, jit_compile=True)

        def replica_step(images, labels):
            loss, grads = forward_backward(images, labels)
            if not loss_scaled:  # the loss-scale optimizer skips non-finite steps by itself
                # A NaN can vanish on its way to the loss (oneDNN's fused ReLU turns NaN into 0)
                # while the gradients carry it into the weights: such a step is non-finite too.
                loss = tf.where(_all_finite(grads), loss, tf.constant(float("nan"), loss.dtype))
            if config.optimizer.clip_global_norm > 0:
                grads = self._clip(grads, replicas, loss_scaled)
            optimizer.apply(grads, trainable)
            return loss

        ema, step = self.ema, self.step

        @tf.function
        def loop(iterator, num_steps):
            total = tf.constant(0.0)
            done = tf.constant(0, tf.int64)
            bad_step = tf.constant(-1, tf.int64)
            for _ in tf.range(num_steps):
                images, labels = next(iterator)
                per_replica = strategy.run(replica_step, args=(images, labels))
                loss = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
                step.assign_add(1)
                if not tf.math.is_finite(loss):
                    bad_step = step.read_value()
                    break
                if ema is not None:
                    ema.update(step, strategy)
                total += loss
                done += 1
            return total / tf.cast(tf.maximum(done, 1), tf.float32), loss, done, bad_step

        return loop

    def _clip(self, grads, replicas, loss_scaled):
        """Clips the all-reduced, unscaled gradients to --clip_global_norm."""
        context = tf.distribute.get_replica_context()
        if replicas > 1:
            grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        scale = self.optimizer.dynamic_scale if loss_scaled else None
        if scale is not None:
            grads = [g / tf.cast(scale, g.dtype) for g in grads]
        grads, _ = tf.clip_by_global_norm(grads, self.config.optimizer.clip_global_norm)
        if scale is not None:
            grads = [g * tf.cast(scale, g.dtype) for g in grads]
        if replicas > 1:  # the optimizer sums over replicas again
            grads = [g / replicas for g in grads]
        return grads

    # -- between loops --------------------------------------------------------------------------
    def save(self, step: int) -> str:
        path = checkpointing.save(self.manager, step)
        if not self.is_chief:
            tf.io.gfile.rmtree(self.manager.directory)
        return path

    @contextlib.contextmanager
    def evaluated_weights(self):
        """Within: the model holds the weights that are evaluated and exported (the EMA ones
        when EMA is on, and changes to them land in the averages); the raw ones after."""
        if self.ema is not None:
            self.ema.swap()
        try:
            yield
        finally:
            if self.ema is not None:
                self.ema.swap()

    def evaluate(self, eval_dataset_fn: DatasetFn) -> dict:
        """Evaluates the EMA weights (raw weights without EMA) and reports eval_results.json."""
        with self.evaluated_weights():
            if self.eval_model is not self.model:
                targets = checkpointing.weight_dict(self.eval_model)
                for path, variable in checkpointing.weight_dict(self.model).items():
                    targets[path].assign(variable)
            results = self.evaluator(eval_dataset_fn, int(self.step.numpy()))
        self.reporter.eval(results)
        return results

    def recompute_batch_norm(self, dataset_fn: DatasetFn, batches: int | None = None) -> int:
        """Precise BN (`efficientnet.train.precise_bn`) for the weights that are evaluated and
        exported (the EMA ones when EMA is on); `batches` defaults to --precise_bn_batches.
        Returns the number of batches used."""
        batches = self.config.train.precise_bn_batches if batches is None else batches
        start = time.time()
        with self.evaluated_weights():
            used = precise_bn.recompute_batch_norm(self.model, self.strategy, dataset_fn, batches)
        if used:
            layers = len(precise_bn.trainable_batch_norms(self.model))
            self.reporter.print(
                f"precise BN: moving statistics of {layers} BN layers recomputed over {used} "
                f"training batches ({used * self.global_batch} images) in "
                f"{time.time() - start:.1f} s")
        return used

    def _run_loop(self, iterator, current: int, num_steps: int) -> dict:
        """Runs `num_steps` compiled steps from step `current`; returns the loop's log record.
        Raises NonFiniteLossError naming the step and the last good checkpoint."""
        config = self.config
        start = time.time()
        mean_loss, _, done, bad_step = self._loop(iterator, tf.constant(num_steps, tf.int64))
        loop_time = time.time() - start
        if int(bad_step) >= 0:
            latest = checkpointing.latest_checkpoint(config.train.model_dir)
            raise NonFiniteLossError(
                f"Loss or gradients became NaN/Inf at step {int(bad_step)}; training stopped. "
                f"The last good checkpoint is {latest or 'none (nothing saved yet)'}. Lower "
                "--base_learning_rate, check the input data, or use --precision=float32.")
        current += int(done)
        epoch = min(config.train_epochs, max(1, math.ceil(current / config.steps_per_epoch)))
        return self.reporter.loop(
            step=current, train_steps=config.train.train_steps, epoch=epoch,
            total_epochs=config.train_epochs, steps=int(done), loop_time=loop_time,
            global_batch=self.global_batch, loss=float(mean_loss),
            lr=float(self.lr_fn(current)))

    def train(self, train_dataset_fn: DatasetFn, eval_dataset_fn: DatasetFn | None = None,
              start_step: int = 0, batch_norm_dataset_fn: DatasetFn | None = None) -> RunResult:
        """Trains to --train_steps, evaluating every --steps_per_eval with an eval dataset.

        After each loop: precise BN before an evaluation and the last checkpoint, a checkpoint
        every --save_checkpoints_steps / evaluation / the end / SIGTERM, then the evaluation.
        `batch_norm_dataset_fn`: the batches of precise BN (default: `train_dataset_fn`)."""
        train = self.config.train
        iterator = iter(self.strategy.distribute_datasets_from_function(train_dataset_fn))
        eval_every = train.steps_per_eval if eval_dataset_fn is not None else 0
        result = RunResult(global_step=start_step)
        last_saved = current = start_step
        with _SigtermFlag() as sigterm:
            while current < train.train_steps:
                boundary = train.train_steps
                if eval_every:
                    boundary = min(boundary, (current // eval_every + 1) * eval_every)
                record = self._run_loop(iterator, current,
                                        min(train.iterations_per_loop, boundary - current))
                current = result.global_step = record["step"]
                result.history.append(record)
                result.loss = record["loss"]
                finished = current >= train.train_steps
                evaluate = bool(eval_every) and (current % eval_every == 0 or finished)
                if train.precise_bn_batches and not sigterm.received and (evaluate or finished):
                    self.recompute_batch_norm(batch_norm_dataset_fn or train_dataset_fn)
                if (current - last_saved >= self.config.checkpoint_interval or evaluate
                        or finished or sigterm.received):
                    self.save(current)
                    last_saved = current
                if sigterm.received:
                    self.reporter.print(
                        f"SIGTERM received: checkpoint saved at step {current}; stopping")
                    raise Preempted(f"stopped by SIGTERM at step {current} (checkpoint saved)")
                if evaluate:
                    result.eval_results = self.evaluate(eval_dataset_fn)
        if current > last_saved:
            self.save(current)
        return result
