"""The input pipeline's XLA programs on the host CPU, one thread each.

Training batches are normalised, and with AutoAugment / RandAugment augmented, by XLA-compiled
batch programs (`pipeline._normalize_batch_fn`, `pipeline._augment_batch_fn`). XLA's CPU compiler
splits every large loop of such a program over TensorFlow's intra-op pool (two tasks per fusion on
a 2-core host: ParallelTaskAssigner). tf.data already runs several batches at once, so the split
buys no throughput and costs CPU: each split loop waits for, and wakes, the other thread. Measured
on the project's 2-core host (benchmarks/input_pipeline.py --program_threads): the AutoAugment +
normalise program takes 0.38 ms of CPU per 224 px image split, 0.22 on one thread.

XLA takes the number of threads from the intra-op pool of the first CPU device that compiles a
program, once per process, and keeps it. `single_thread_cpu_xla()` therefore starts TensorFlow
with one intra-op thread, compiles a trivial program (which creates XLA's CPU client with one
thread) and starts TensorFlow again with the thread settings it had: ordinary kernels (decode,
resize, the training step) keep the whole intra-op pool, CPU XLA programs run on one thread each.
`efficientnet.train.distribute.create_strategy` calls it for training runs whose own step is not
XLA-compiled on the CPU (evaluation compiles no CPU XLA program).
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.python.eager import context


def single_thread_cpu_xla() -> bool:
    """Makes every XLA program this process compiles for the host CPU run on one thread; returns
    whether it did.

    It must run before TensorFlow starts its runtime (the first op or tensor): afterwards, or when
    this process has already configured TensorFlow beyond its thread counts (devices, placement,
    seeds), it changes nothing and returns False. The thread counts set before are kept.
    """
    ctx = context.context()
    if ctx._initialized or ctx._seed is not None:
        return False
    intra, inter = ctx.intra_op_parallelism_threads, ctx.inter_op_parallelism_threads
    default = context.Context()
    default.intra_op_parallelism_threads, default.inter_op_parallelism_threads = intra, inter
    if ctx.config != default.config:
        return False
    ctx.intra_op_parallelism_threads = 1
    with tf.device("/CPU:0"):
        tf.function(lambda x: x + 1, jit_compile=True, autograph=False)(tf.constant(0.0)).numpy()
    context._reset_context()
    ctx = context.context()
    ctx.intra_op_parallelism_threads, ctx.inter_op_parallelism_threads = intra, inter
    return True
