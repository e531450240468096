"""Data-parallel scaling on one host: 1 device, 2 logical CPU devices (MirroredStrategy) and
2 worker processes (MultiWorkerMirroredStrategy over localhost), same global batch.

Each setting runs `python -m efficientnet.main` on synthetic data in its own process(es): logical
devices must be configured before TensorFlow starts. Statistic: global images per wall-clock
second, median of the loops after the first. On one host the replicas share the cores, so this
measures the strategies' overhead, not a speed-up. `allreduce` times what data parallelism adds
to every step, one all-reduce of B0's float32 gradients between 2 workers (docs/scaling.md).
"""

from __future__ import annotations

import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MODEL, SIZE, BATCH = "efficientnet-b0", 64, 32


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _processes(args: list[str], workers: int = 1) -> list[str]:
    """Runs `args` once, or as `workers` MultiWorkerMirrored workers over loopback; their
    stdouts, or RuntimeError with the end of a failed one's stderr."""
    envs = [dict(os.environ)]
    if workers > 1:
        cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(workers)]}
        envs = [{**os.environ, "TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": i}})} for i in range(workers)]
    procs = [subprocess.Popen(args, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env) for env in envs]
    outs = []
    for index, proc in enumerate(procs):
        out, err = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"{args[2]} (process {index}) failed ({proc.returncode}): "
                               f"{err[-2000:]}")
        outs.append(out)
    return outs


def train_rate(steps: int, loops: int, extra: tuple = (), workers: int = 1) -> float:
    """Global images/s of `python -m efficientnet.main` (`extra` flags, `workers` processes),
    median of its loops after the first."""
    with tempfile.TemporaryDirectory() as model_dir:
        _processes([sys.executable, "-m", "efficientnet.main", f"--model_name={MODEL}",
                    "--mode=train", "--use_synthetic_data", f"--model_dir={model_dir}",
                    f"--image_size={SIZE}", f"--train_batch_size={BATCH}",
                    f"--iterations_per_loop={steps}", f"--train_steps={steps * loops}",
                    f"--save_checkpoints_steps={steps * loops}", "--num_label_classes=10",
                    *extra], workers)
        records = map(json.loads, Path(model_dir, "metrics.jsonl").read_text().splitlines())
        rates = [record["images_per_sec"] for record in records if record.get("kind") == "train"]
    return statistics.median(rates[1:] or rates)


def gradient_bytes(model_name: str = MODEL, num_classes: int = 1000) -> tuple[int, int]:
    """(trainable parameters, bytes of their float32 gradients) of `model_name`."""
    from efficientnet import models

    model = models.build(model_name, num_classes=num_classes, image_size=224)
    params = sum(math.prod(v.shape) for v in model.trainable_variables)
    return params, 4 * params


def _allreduce_child(reps: int) -> None:
    """One worker (TF_CONFIG set): times `reps` all-reduces of B0's gradient shapes."""
    import time

    import tensorflow as tf

    from efficientnet import models

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    shapes = [v.shape for v in models.build(MODEL, 1000, image_size=224).trainable_variables]
    step = tf.function(lambda: strategy.run(lambda: tf.add_n([tf.reduce_sum(g) for g in (
        tf.distribute.get_replica_context().all_reduce("sum", [tf.fill(s, 1.0) for s in shapes]))])))
    total, times = float(step()), []  # the first call builds the collective groups
    for _ in range(reps):
        start = time.perf_counter()
        total = float(step())
        times.append((time.perf_counter() - start) * 1000)
    print(json.dumps({"ms": times, "sum": total}), flush=True)


def allreduce(reps: int = 10, workers: int = 2) -> dict:
    """Per-step all-reduce of B0's gradients between `workers` processes over loopback."""
    params, size = gradient_bytes()
    code = f"from benchmarks.scaling import _allreduce_child; _allreduce_child({reps})"
    outs = [json.loads(out.strip().splitlines()[-1])
            for out in _processes([sys.executable, "-c", code], workers)]
    if any(o["sum"] != workers * params for o in outs):  # every gradient element is 1
        raise RuntimeError(f"all-reduce gave {[o['sum'] for o in outs]}, not {workers * params}")
    ms = sorted(outs[0]["ms"])  # the chief's clock
    sent = 2 * (workers - 1) / workers * size  # per worker, ring all-reduce
    return {"model": MODEL, "trainable_params": params, "gradient_bytes": size,
            "workers": workers, "bytes_sent_per_worker_ring": int(sent), "reps": reps,
            "ms_median": round(statistics.median(ms), 2), "ms_min": round(ms[0], 2),
            "ms_max": round(ms[-1], 2), "ms_all": [round(t, 2) for t in ms],
            "loopback_gb_per_s_median": round(sent / statistics.median(ms) / 1e6, 3)}


def run(quick: bool = False) -> dict:
    steps, loops = (3, 3) if quick else (5, 4)
    one = train_rate(steps, loops)
    mirrored = train_rate(steps, loops, ("--num_cpu_devices=2",))
    workers = train_rate(steps, loops, workers=2)
    return {
        "settings": {"model": MODEL, "image_size": SIZE, "global_batch": BATCH,
                     "steps_per_loop": steps, "loops": loops},
        "images_per_sec": {"1 device": one, "2 logical devices (Mirrored)": mirrored,
                           "2 worker processes (MultiWorkerMirrored)": workers},
        "ratio_vs_1_device": {"mirrored_2": round(mirrored / one, 3),
                              "multiworker_2": round(workers / one, 3)},
        "allreduce": allreduce(reps=5 if quick else 20),
    }
