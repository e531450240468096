"""The training engine: custom in-graph loop, checkpoints, resume, NaN guard, evaluation.

`run(config)` is what `python -m efficientnet.main` calls and what tests call. One `tf.function`
runs `iterations_per_loop` steps in-graph through `strategy.run` (no `model.fit`: fit with
steps_per_execution breaks under MirroredStrategy, keras-team/keras#19246).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable

import keras
import tensorflow as tf

from efficientnet.train import checkpointing, distribute, faults, inputs, optimization
from efficientnet.train.config import ConfigError, RunConfig
from efficientnet.train.reporting import Reporter

ModelFn = Callable[[RunConfig, int], keras.Model]
DatasetFn = Callable[[tf.distribute.InputContext], tf.data.Dataset]


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or Inf loss or gradient; the message names the step and the last
    checkpoint."""


def _all_finite(grads) -> tf.Tensor:
    """True when every gradient value is finite (IndexedSlices: their values)."""
    values = [g.values if isinstance(g, tf.IndexedSlices) else g for g in grads if g is not None]
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in values])


class Preempted(RuntimeError):
    """SIGTERM arrived; a checkpoint was saved before stopping."""


@dataclasses.dataclass
class RunResult:
    global_step: int
    loss: float | None = None
    eval_results: dict | None = None
    history: list = dataclasses.field(default_factory=list)  # per-loop train records


# ---------------------------------------------------------------------------------------------
# Set-up shared by train and eval.


def _spec(config: RunConfig):
    from efficientnet.models import get_spec

    try:
        return get_spec(config.model_name)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _spec_if_known(config: RunConfig):
    try:
        return _spec(config)
    except ConfigError:
        return None


def image_sizes(config: RunConfig, spec) -> tuple[int, int]:
    """(train, eval) resolution: --image_size for both, else the spec's."""
    if config.image_size:
        return config.image_size, config.image_size
    if spec is None:
        raise ConfigError("--image_size is required with a custom model")
    return spec.train_size, spec.eval_size


def default_model_fn(config: RunConfig, image_size: int) -> keras.Model:
    from efficientnet.models import build
    from efficientnet.train.fused_batch_norm import FusedBatchNormalization

    return build(config.model_name, num_classes=config.num_label_classes, image_size=image_size,
                 dropout_rate=config.dropout_rate, drop_connect_rate=config.drop_connect_rate,
                 batch_norm_layer=FusedBatchNormalization)


def _check_batches(config: RunConfig, strategy) -> None:
    replicas = strategy.num_replicas_in_sync
    for name in ("train_batch_size", "eval_batch_size"):
        value = getattr(config, name)
        if value % replicas:
            raise ConfigError(
                f"--{name}={value} is not divisible by the {replicas} replicas of this run "
                f"({type(strategy).__name__}); use a multiple of {replicas}")


def _local_replicas(strategy) -> int:
    _, _, workers = distribute.task_info(strategy)
    return max(1, strategy.num_replicas_in_sync // workers)


def _eval_dataset_fn(config, spec, image_size, strategy):
    global_batch = config.eval_batch_size
    if config.use_synthetic_data:
        steps = math.ceil(config.num_eval_images / global_batch)
        per_pipeline = steps * _local_replicas(strategy)
    else:
        per_pipeline = None
    if inputs.data_module_available():
        fn = inputs.make_dataset_fn(config, spec, False, global_batch, image_size)
    elif config.use_synthetic_data:
        fn = inputs.synthetic_dataset_fn(False, global_batch, image_size,
                                         config.num_label_classes, seed=config.seed + 1)
    else:
        raise ConfigError("efficientnet.data is not installed: only --use_synthetic_data works")
    if per_pipeline is None:
        return fn
    return lambda ctx: fn(ctx).take(per_pipeline)


def _train_dataset_fn(config, spec, image_size, start_step, strategy):
    """The training input, positioned for a run resuming at `start_step`.

    With --deterministic the pipeline is replayed and the consumed batches skipped (the exact
    input position); otherwise it is reseeded with seed + start_step (cheap, still reproducible).
    """
    skip = start_step * _local_replicas(strategy) if config.deterministic else 0
    data_config = config if config.deterministic else config.replace(seed=config.seed + start_step)
    if inputs.data_module_available():
        return inputs.make_dataset_fn(data_config, spec, True, config.train_batch_size,
                                      image_size, skip_batches=skip)
    if config.use_synthetic_data:
        return inputs.synthetic_dataset_fn(True, config.train_batch_size, image_size,
                                           config.num_label_classes, seed=data_config.seed)
    raise ConfigError("efficientnet.data is not installed: only --use_synthetic_data works")


def _skipping(fn: DatasetFn, batches: int) -> DatasetFn:
    return fn if not batches else (lambda ctx: fn(ctx).skip(batches))


def _set_precision(config: RunConfig) -> None:
    keras.mixed_precision.set_global_policy(config.precision)


def _seed(config: RunConfig) -> None:
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()


# ---------------------------------------------------------------------------------------------
# Evaluation.


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


# ---------------------------------------------------------------------------------------------
# Training.


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


@contextlib.contextmanager
def _batch_moments_mode(norms: list, dropouts: list):
    """Within: a training call leaves each BN layer's batch moments in its moving statistics
    (momentum 0; each replica in its own copy: BN statistics are not synchronised), with dropout
    and drop-connect off. Their means over replicas and batches are the exact moments over all
    the images (equal sizes: training batches drop the remainder)."""
    momenta = [layer.momentum for layer in norms]
    rates = [layer.rate for layer in dropouts]
    for layer in norms:
        layer.momentum = 0.0
    for layer in dropouts:
        layer.rate = 0.0
    try:
        yield
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
        for layer, rate in zip(dropouts, rates):
            layer.rate = rate


class Trainer:
    """Model, optimizer, EMA, checkpoint and the compiled loop of one run."""

    def __init__(self, config: RunConfig, strategy, spec=None, model_fn: ModelFn | None = None,
                 reporter: Reporter | None = None):
        self.config = config
        self.strategy = strategy
        self.spec = spec
        self.is_chief, self.task_id, self.num_workers = distribute.task_info(strategy)
        self.reporter = reporter or Reporter(config.model_dir, self.is_chief)
        self.train_size, self.eval_size = image_sizes(config, spec)
        model_fn = model_fn or default_model_fn
        self.global_batch = config.train_batch_size
        self.lr_fn = optimization.learning_rate_fn(config)

        with strategy.scope():
            self.model = model_fn(config, self.train_size)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.optimizer = optimization.build_optimizer(config, lambda: self.lr_fn(self.step))
            self.frozen = self._freeze()
            frozen_paths = {v.path for v in self.frozen}
            self.trainable = [v for v in self.model.trainable_variables
                              if v.path not in frozen_paths]
            if not self.trainable:
                raise ConfigError("No trainable variables left (does --freeze_pattern match all?)")
            self.optimizer.build(self.trainable)
            self.ema = None
            if config.moving_average_decay > 0:
                self.ema = optimization.WeightAverage(
                    checkpointing.weight_dict(self.model), config.moving_average_decay)
            self.eval_model = self.model
            if self.eval_size != self.train_size:
                self.eval_model = model_fn(config, self.eval_size)
        self.decayed = optimization.decayed_variables(self.trainable)
        self.checkpoint = checkpointing.make_checkpoint(
            self.model, self.step, self.ema.averages if self.ema else None, self.optimizer)
        directory = (config.model_dir if self.is_chief
                     else checkpointing.worker_checkpoint_dir(config.model_dir, self.task_id))
        self.manager = checkpointing.make_manager(
            self.checkpoint, directory, config.keep_checkpoint_max)
        self.evaluator = Evaluator(self.eval_model, strategy, config.num_label_classes)
        self._loop = self._make_loop()

    # -- set-up ---------------------------------------------------------------------------------
    def _restore_module(self):
        try:
            from efficientnet.train import restore
        except ImportError:
            return None
        return restore

    def _freeze(self) -> list:
        pattern = self.config.freeze_pattern
        if not pattern:
            return []
        restore = self._restore_module()
        if restore is None or not hasattr(restore, "frozen_variables"):
            raise ConfigError("--freeze_pattern needs efficientnet.train.restore, not installed")
        if hasattr(restore, "apply_freeze"):
            restore.apply_freeze(self.model, pattern)
        frozen = list(restore.frozen_variables(self.model, pattern))
        if not frozen and not hasattr(restore, "apply_freeze"):
            raise ConfigError(f"--freeze_pattern={pattern!r} matches no variable")
        # BN layers whose weights are all frozen run in inference mode (Keras 3: trainable=False).
        frozen_paths = {v.path for v in frozen}
        for layer in self.model._flatten_layers(include_self=False):
            if isinstance(layer, keras.layers.BatchNormalization) and layer.weights and all(
                    w.path in frozen_paths for w in layer.trainable_weights or layer.weights):
                layer.trainable = False
        return frozen

    def restore_or_initialize(self) -> int:
        """Resumes from model_dir, else applies --restore_path; returns the starting step."""
        latest = checkpointing.latest_readable_checkpoint(
            self.config.model_dir, clean=self.is_chief, say=self.reporter.print)
        if latest:
            checkpointing.restore(self.checkpoint, latest)
            step = int(self.step.numpy())
            self.reporter.print(f"Resuming from {latest} at step {step}")
            self.reporter.drop_records_after(step)  # those of a run killed after this checkpoint
            return step
        if self.config.restore_path:
            restore = self._restore_module()
            if restore is None:
                raise ConfigError("--restore_path needs efficientnet.train.restore, not installed")
            restore.restore_pretrained(
                self.model, model_name=self.config.model_name,
                restore_path=self.config.restore_path, exclude=list(self.config.restore_exclude),
                prefer_ema=self.config.restore_prefer_ema, model_dir=self.config.model_dir)
            if self.ema is not None:  # the averages start from the restored weights
                for path, average in self.ema.averages.items():
                    average.assign(self.ema.sources[path])
        return 0

    # -- the compiled loop ----------------------------------------------------------------------
    def _make_loop(self):
        config, strategy, model = self.config, self.strategy, self.model
        optimizer, trainable, decayed = self.optimizer, self.trainable, self.decayed
        replicas = strategy.num_replicas_in_sync
        global_batch = self.global_batch
        loss_scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

        def forward_backward(images, labels):
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                per_example = optimization.cross_entropy(labels, logits, config.label_smoothing)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                if config.weight_decay > 0:
                    loss += config.weight_decay * optimization.l2_loss(decayed) / replicas
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
            if config.clip_global_norm > 0:
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
        grads, _ = tf.clip_by_global_norm(grads, self.config.clip_global_norm)
        if scale is not None:
            grads = [g * tf.cast(scale, g.dtype) for g in grads]
        if replicas > 1:  # the optimizer sums over replicas again
            grads = [g / replicas for g in grads]
        return grads

    # -- running --------------------------------------------------------------------------------
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
        """Precise BN (pycls): the BN moving statistics of the weights that are evaluated and
        exported (the EMA weights when EMA is on, else the raw ones) become the exact mean and
        variance of each layer's input over `--precise_bn_batches` training batches, run with
        those weights, dropout and drop-connect off. BN momentum 0.99 averages over ~100 steps
        whose weights have since moved: in a short run those statistics no longer fit the
        weights. Frozen BN layers keep theirs. `batches` defaults to --precise_bn_batches.
        Returns the number of batches used.
        """
        batches = self.config.precise_bn_batches if batches is None else batches
        layers = list(self.model._flatten_layers(include_self=False))
        norms = [layer for layer in layers
                 if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
        if not norms:
            return 0
        dropouts = [layer for layer in layers if isinstance(layer, keras.layers.Dropout)]
        strategy, model = self.strategy, self.model
        start = time.time()
        with self.evaluated_weights(), _batch_moments_mode(norms, dropouts):

            def replica_moments(images, labels):
                model(images, training=True)
                moments = []
                for layer in norms:
                    mean = tf.cast(layer.moving_mean, tf.float64)
                    moments += [mean, tf.cast(layer.moving_variance, tf.float64) + mean * mean]
                return moments

            @tf.function
            def moments_of(batch):
                per_replica = strategy.run(replica_moments, args=batch)
                return strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

            sums = None
            used = 0
            for batch in strategy.distribute_datasets_from_function(dataset_fn):
                if used == batches:
                    break
                moments = moments_of(batch)
                sums = moments if sums is None else [a + b for a, b in zip(sums, moments)]
                used += 1
            if used == 0:
                raise ConfigError("--precise_bn_batches: the training data gave no batch")
            for index, layer in enumerate(norms):
                mean = sums[2 * index] / used
                variance = tf.maximum(sums[2 * index + 1] / used - mean * mean, 0.0)
                layer.moving_mean.assign(tf.cast(mean, layer.moving_mean.dtype))
                layer.moving_variance.assign(tf.cast(variance, layer.moving_variance.dtype))
        self.reporter.print(
            f"precise BN: moving statistics of {len(norms)} BN layers recomputed over {used} "
            f"training batches ({used * self.global_batch} images) in {time.time() - start:.1f} s")
        return used

    def train(self, train_dataset_fn: DatasetFn, eval_dataset_fn: DatasetFn | None = None,
              start_step: int = 0, batch_norm_dataset_fn: DatasetFn | None = None) -> RunResult:
        """Trains to --train_steps (evaluating every --steps_per_eval with an eval dataset).
        `batch_norm_dataset_fn`: the training batches of --precise_bn_batches
        (default: `train_dataset_fn`)."""
        config = self.config
        dataset = self.strategy.distribute_datasets_from_function(train_dataset_fn)
        iterator = iter(dataset)
        current = start_step
        result = RunResult(global_step=current)
        last_saved = current
        steps_per_epoch = config.steps_per_epoch
        total_epochs = config.train_epochs
        eval_every = config.steps_per_eval if eval_dataset_fn is not None else 0
        with _SigtermFlag() as sigterm:
            while current < config.train_steps:
                boundary = config.train_steps
                if eval_every:
                    boundary = min(boundary, (current // eval_every + 1) * eval_every)
                num_steps = min(config.iterations_per_loop, boundary - current)
                start = time.time()
                mean_loss, _, done, bad_step = self._loop(iterator, tf.constant(num_steps, tf.int64))
                loop_time = time.time() - start
                bad_step = int(bad_step)
                if bad_step >= 0:
                    latest = checkpointing.latest_checkpoint(config.model_dir)
                    raise NonFiniteLossError(
                        f"Loss or gradients became NaN/Inf at step {bad_step}; training "
                        "stopped. The last "
                        f"good checkpoint is {latest or 'none (nothing saved yet)'}. Lower "
                        "--base_learning_rate, check the input data, or use --precision=float32.")
                current += int(done)
                lr = float(self.lr_fn(current))
                epoch = min(total_epochs, max(1, math.ceil(current / steps_per_epoch)))
                record = self.reporter.loop(
                    step=current, train_steps=config.train_steps, epoch=epoch,
                    total_epochs=total_epochs, steps=int(done), loop_time=loop_time,
                    global_batch=self.global_batch, loss=float(mean_loss), lr=lr)
                result.history.append(record)
                result.loss = float(mean_loss)
                at_eval = bool(eval_every) and current % eval_every == 0
                if (config.precise_bn_batches and not sigterm.received
                        and (at_eval or current >= config.train_steps)):
                    self.recompute_batch_norm(batch_norm_dataset_fn or train_dataset_fn)
                if (current - last_saved >= config.checkpoint_interval or at_eval
                        or current >= config.train_steps or sigterm.received):
                    self.save(current)
                    last_saved = current
                if sigterm.received:
                    self.reporter.print(
                        f"SIGTERM received: checkpoint saved at step {current}; stopping")
                    result.global_step = current
                    raise Preempted(f"stopped by SIGTERM at step {current} (checkpoint saved)")
                if at_eval or (eval_every and current >= config.train_steps):
                    result.eval_results = self.evaluate(eval_dataset_fn)
        if current > last_saved:
            self.save(current)
        result.global_step = current
        return result


# ---------------------------------------------------------------------------------------------
# Entry points.


def run(config: RunConfig, *, model_fn: ModelFn | None = None,
        train_dataset_fn: DatasetFn | None = None, eval_dataset_fn: DatasetFn | None = None,
        strategy: tf.distribute.Strategy | None = None) -> RunResult:
    """Runs `config.mode`. Custom model / dataset functions replace the zoo and efficientnet.data
    (tests); a resumed run skips `step x local replicas` batches of a custom train dataset."""
    config.validate()
    # A custom model still takes its input preprocessing from the spec of --model_name.
    spec = _spec(config) if model_fn is None else _spec_if_known(config)
    need_train = config.mode != "eval" and train_dataset_fn is None
    need_eval = config.mode != "train" and eval_dataset_fn is None
    inputs.check_data_dir(config, need_train, need_eval)
    strategy = strategy or distribute.create_strategy(config)
    _check_batches(config, strategy)
    _set_precision(config)
    _seed(config)
    if config.mode == "eval":
        return evaluate_checkpoints(config, strategy, spec, model_fn, eval_dataset_fn)
    with checkpointing.training_lock(config.model_dir, distribute.task_info(strategy)[0]):
        return _train(config, strategy, spec, model_fn, train_dataset_fn, eval_dataset_fn)


def _train(config, strategy, spec, model_fn, train_dataset_fn, eval_dataset_fn) -> RunResult:
    trainer = Trainer(config, strategy, spec, model_fn)
    if model_fn is None:  # the zoo's models on a CPU host: refuse a batch that cannot fit
        faults.check_memory_for(trainer)
    if trainer.is_chief:
        from efficientnet.train.flags import save_config

        save_config(config)
    try:
        start_step = trainer.restore_or_initialize()
        if train_dataset_fn is None:
            train_fn = _train_dataset_fn(config, spec, trainer.train_size, start_step, strategy)
        else:
            train_fn = _skipping(train_dataset_fn, start_step * _local_replicas(strategy))
        eval_fn = None
        if config.mode == "train_and_eval":
            eval_fn = eval_dataset_fn or _eval_dataset_fn(config, spec, trainer.eval_size,
                                                          strategy)
        if start_step >= config.train_steps:
            trainer.reporter.print(
                f"{config.model_dir} is already at step {start_step} >= --train_steps="
                f"{config.train_steps}; nothing to train")
            result = RunResult(global_step=start_step)
            if eval_fn is not None:
                result.eval_results = trainer.evaluate(eval_fn)
            return result
        batch_norm_fn = None
        if (config.precise_bn_batches and train_dataset_fn is None and start_step
                and config.deterministic):
            # from the first batch: a --deterministic resume first skips what was consumed
            batch_norm_fn = _train_dataset_fn(config, spec, trainer.train_size, 0, strategy)
        result = trainer.train(train_fn, eval_fn, start_step, batch_norm_fn)
        trainer.reporter.print(f"Training done at step {result.global_step}; checkpoints in "
                               f"{config.model_dir}")
        if config.export_dir and trainer.is_chief:
            _export_saved_model(config, trainer.reporter)
        return result
    finally:
        trainer.reporter.close()
        if not trainer.is_chief:
            shutil.rmtree(os.path.dirname(trainer.manager.directory), ignore_errors=True)


def export_args(config: RunConfig) -> list[str]:
    """`python -m efficientnet.export` flags for --export_dir: the run's model, classes, size and
    eval preprocessing (serving_bytes crops and resizes as this run evaluated)."""
    args = [f"--model_name={config.model_name}", f"--model_dir={config.model_dir}",
            f"--export_dir={config.export_dir}", f"--num_label_classes={config.num_label_classes}",
            "--formats=saved_model"]
    if config.image_size:
        args.append(f"--image_size={config.image_size}")
    if config.crop_padding is not None:
        args.append(f"--crop_padding={config.crop_padding}")
    if config.resize_method:
        args.append(f"--resize_method={config.resize_method}")
    return args


def _export_saved_model(config: RunConfig, reporter: Reporter) -> None:
    """--export_dir after training (tensorflow/tpu main.py habit): a SavedModel via
    efficientnet.export; other formats: `bash test.sh export`."""
    try:
        from efficientnet.export.__main__ import main as export_main
    except ImportError:
        reporter.print("--export_dir given but efficientnet.export is not installed; not exported")
        return
    status = export_main(export_args(config))
    reporter.print(f"SavedModel export to {config.export_dir}: "
                   + ("done" if status == 0 else f"failed (status {status})"))


def evaluate_checkpoints(config: RunConfig, strategy, spec=None, model_fn: ModelFn | None = None,
                         eval_dataset_fn: DatasetFn | None = None) -> RunResult:
    """mode=eval: evaluates the latest checkpoint (or, with eval_watch, each new one)."""
    is_chief, _, _ = distribute.task_info(strategy)
    reporter = Reporter(config.model_dir, is_chief)
    _, eval_size = image_sizes(config, spec)
    with strategy.scope():
        model = (model_fn or default_model_fn)(config, eval_size)
    evaluator = Evaluator(model, strategy, config.num_label_classes)
    eval_fn = eval_dataset_fn or _eval_dataset_fn(config, spec, eval_size, strategy)
    result = RunResult(global_step=0)

    def evaluate(path: str) -> None:
        step = checkpointing.load_weights_for_inference(model, path, use_ema=True)
        result.global_step = step
        result.eval_results = evaluator(eval_fn, step)
        reporter.eval(result.eval_results)

    try:
        if not config.eval_watch:
            latest = checkpointing.latest_readable_checkpoint(config.model_dir,
                                                              say=reporter.print)
            if latest is None:
                raise FileNotFoundError(
                    f"No checkpoint in --model_dir {config.model_dir!r} to evaluate")
            evaluate(latest)
            return result
        for path in tf.train.checkpoints_iterator(config.model_dir, timeout=config.eval_timeout):
            evaluate(path)
            if result.global_step >= config.train_steps:
                break
        return result
    finally:
        reporter.close()
