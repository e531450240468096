"""`run(experiment)`: what `python -m efficientnet.main` calls and what tests call.

The pieces, one module per concern: `setup` (spec, sizes, model, numerics), `inputs` (datasets),
`loop` (the `Trainer`: model, optimizer, EMA, compiled steps, checkpoints), `initial_weights`
(resume / transfer), `precise_bn`, `evaluation` (`Evaluator`, `--mode=eval`) and `exporting`
(--export_dir). `efficientnet.config.run_file` owns `<model_dir>/config.json`.
"""

from __future__ import annotations

import os
import shutil

import tensorflow as tf

from efficientnet.config import run_file
from efficientnet.config.schema import Experiment
from efficientnet.train import checkpointing, distribute, exporting, faults, inputs, setup
from efficientnet.train.evaluation import Evaluator, RunResult, evaluate_checkpoints
from efficientnet.train.loop import NonFiniteLossError, Preempted, Trainer
from efficientnet.train.setup import DatasetFn, ModelFn, default_model_fn, image_sizes

__all__ = [
    "Evaluator", "NonFiniteLossError", "Preempted", "RunResult", "Trainer", "default_model_fn",
    "evaluate_checkpoints", "image_sizes", "run",
]


def run(config: Experiment, *, model_fn: ModelFn | None = None,
        train_dataset_fn: DatasetFn | None = None, eval_dataset_fn: DatasetFn | None = None,
        strategy: tf.distribute.Strategy | None = None) -> RunResult:
    """Runs `config.train.mode`. Custom model / dataset functions replace the zoo and
    efficientnet.data (tests); a resumed run skips `step x local replicas` batches of a custom
    train dataset. Training writes config.json only once the resume or restore succeeded, and
    refuses a model_dir whose run has another model, head or size before writing anything."""
    config.validate()
    training = config.train.mode != "eval"
    if training:
        run_file.check_resume(config)
    # A custom model still takes its input preprocessing from the spec of --model_name.
    spec = setup.model_spec(config, required=model_fn is None)
    inputs.check_data_dir(config, need_train=training and train_dataset_fn is None,
                          need_eval=config.train.mode != "train" and eval_dataset_fn is None)
    strategy = strategy or distribute.create_strategy(config)
    setup.check_batches(config, strategy)
    setup.set_numerics(config)
    if not training:
        return evaluate_checkpoints(config, strategy, spec, model_fn, eval_dataset_fn)
    with checkpointing.training_lock(config.train.model_dir, distribute.task_info(strategy)[0]):
        return _train(config, strategy, spec, model_fn, train_dataset_fn, eval_dataset_fn)


def _train(config: Experiment, strategy, spec, model_fn: ModelFn | None,
           train_dataset_fn: DatasetFn | None, eval_dataset_fn: DatasetFn | None) -> RunResult:
    """Builds the Trainer, resumes or restores, writes config.json, trains, exports."""
    trainer = Trainer(config, strategy, spec, model_fn)
    if model_fn is None:  # the zoo's models on a CPU host: refuse a batch that cannot fit
        faults.check_memory_for(trainer)
    try:
        start_step = trainer.restore_or_initialize()
        if trainer.is_chief:
            run_file.write(config)
        train_fn, eval_fn, batch_norm_fn = _datasets(config, spec, trainer, start_step, strategy,
                                                     train_dataset_fn, eval_dataset_fn)
        if start_step >= config.train.train_steps:
            return _already_trained(trainer, start_step, eval_fn)
        result = trainer.train(train_fn, eval_fn, start_step, batch_norm_fn)
        trainer.reporter.print(f"Training done at step {result.global_step}; checkpoints in "
                               f"{config.train.model_dir}")
        if config.train.export_dir and trainer.is_chief:
            exporting.export_saved_model(config, trainer.reporter)
        return result
    finally:
        trainer.reporter.close()
        if not trainer.is_chief:
            shutil.rmtree(os.path.dirname(trainer.manager.directory), ignore_errors=True)


def _datasets(config: Experiment, spec, trainer: Trainer, start_step: int, strategy,
              train_dataset_fn: DatasetFn | None, eval_dataset_fn: DatasetFn | None):
    """(train, eval or None, precise-BN or None) dataset functions, positioned at start_step."""
    if train_dataset_fn is None:
        train_fn = inputs.train_dataset_fn(config, spec, trainer.train_size, start_step, strategy)
    else:
        train_fn = inputs.skipping(train_dataset_fn,
                                   start_step * inputs.local_replicas(strategy))
    eval_fn = None
    if config.train.mode == "train_and_eval":
        eval_fn = eval_dataset_fn or inputs.eval_dataset_fn(config, spec, trainer.eval_size,
                                                            strategy)
    batch_norm_fn = None
    if (config.train.precise_bn_batches and train_dataset_fn is None and start_step
            and config.train.deterministic):
        # from the first batch: a --deterministic resume first skips what was consumed
        batch_norm_fn = inputs.train_dataset_fn(config, spec, trainer.train_size, 0, strategy)
    return train_fn, eval_fn, batch_norm_fn


def _already_trained(trainer: Trainer, start_step: int, eval_fn: DatasetFn | None) -> RunResult:
    """A model_dir already at --train_steps: says so and evaluates (train_and_eval)."""
    trainer.reporter.print(
        f"{trainer.config.train.model_dir} is already at step {start_step} >= --train_steps="
        f"{trainer.config.train.train_steps}; nothing to train")
    result = RunResult(global_step=start_step)
    if eval_fn is not None:
        result.eval_results = trainer.evaluate(eval_fn)
    return result
