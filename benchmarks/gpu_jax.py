"""GPU training speed: our models under the Keras JAX backend vs timm with AMP.

The GPU machines have JAX and PyTorch but no TensorFlow, so this module imports neither
TensorFlow nor the training engine: it builds the zoo's models (keras.layers / keras.ops only)
under `KERAS_BACKEND=jax` and trains them with a jitted stateless step (the engine's RMSProp,
label smoothing and weight decay), next to timm's twin of each model (torch.autocast bfloat16,
channels_last), each in its own process. The statistic is images/s, the median of the timed
steps after a warm-up.

    python -m benchmarks.gpu_jax speed --models efficientnet-b0,efficientnetv2-s --batch 128 \
        --output gpu_speed.json                                  # on the GPU machine
    python -m benchmarks.gpu_jax record --speed gpu_speed.json   # here: results/gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# timm names of the same architectures (same block strings and widths).
TIMM_TWINS = {"efficientnet-b0": "efficientnet_b0", "efficientnetv2-s": "tf_efficientnetv2_s"}


def _keras_jax(precision: str):
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError("set KERAS_BACKEND=jax before keras is imported")
    keras.mixed_precision.set_global_policy(precision)
    return keras


def _tf1_rmsprop(learning_rate):
    """The engine's optimizer (recipe constants), importable without TensorFlow."""
    from efficientnet.train.rmsprop import TF1RMSprop

    return TF1RMSprop(learning_rate=learning_rate, rho=0.9, momentum=0.9, epsilon=1e-3)


def _train_step_fn(keras, model, optimizer, label_smoothing: float, weight_decay: float):
    import jax
    import jax.numpy as jnp

    decayed = [i for i, v in enumerate(model.trainable_variables)
               if len(v.shape) > 1]  # no decay on BN and biases, as the engine

    def loss_fn(trainable, non_trainable, images, labels):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, images,
                                                     training=True)
        logits = logits.astype(jnp.float32)
        loss = keras.losses.categorical_crossentropy(
            labels, logits, from_logits=True, label_smoothing=label_smoothing).mean()
        if weight_decay:
            loss = loss + weight_decay * 0.5 * sum(
                jnp.sum(jnp.square(trainable[i].astype(jnp.float32))) for i in decayed)
        return loss, non_trainable

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state, images, labels):
        trainable, non_trainable, optimizer_vars = state
        (loss, non_trainable), grads = grad_fn(trainable, non_trainable, images, labels)
        trainable, optimizer_vars = optimizer.stateless_apply(optimizer_vars, grads, trainable)
        return loss, (trainable, non_trainable, optimizer_vars)

    return jax.jit(step, donate_argnums=0)


def _state(model, optimizer):
    optimizer.build(model.trainable_variables)
    return ([v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in optimizer.variables])


def speed_ours(name: str, batch: int, size: int, steps: int, warmup: int, precision: str) -> dict:
    keras = _keras_jax(precision)
    import jax
    import jax.numpy as jnp

    from efficientnet import models

    model = models.build(name, num_classes=1000, image_size=size)
    optimizer = _tf1_rmsprop(0.016 * batch / 256)
    step = _train_step_fn(keras, model, optimizer, 0.1, 1e-5)
    state = _state(model, optimizer)
    key = jax.random.PRNGKey(0)
    images = jax.random.normal(key, (batch, size, size, 3), jnp.float32)
    labels = jax.nn.one_hot(jax.random.randint(key, (batch,), 0, 1000), 1000)
    start = time.perf_counter()
    loss, state = step(state, images, labels)
    loss.block_until_ready()
    compile_s = time.perf_counter() - start
    for _ in range(warmup):
        loss, state = step(state, images, labels)
    loss.block_until_ready()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss, state = step(state, images, labels)
        loss.block_until_ready()
        times.append(time.perf_counter() - start)
    return {"framework": "keras-jax", "model": name, "precision": precision, "batch": batch,
            "size": size, "images_per_sec": round(batch / statistics.median(times), 1),
            "compile_s": round(compile_s, 1), "loss": float(loss),
            "device": str(jax.devices()[0]), "jax": jax.__version__,
            "keras": keras.__version__}


def speed_timm(name: str, batch: int, size: int, steps: int, warmup: int,
               compiled: bool) -> dict:
    import timm
    import torch

    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    model = timm.create_model(TIMM_TWINS[name], num_classes=1000).to(device).train()
    model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compiled else model
    optimizer = torch.optim.RMSprop(model.parameters(), lr=0.016 * batch / 256, alpha=0.9,
                                    eps=1e-3, momentum=0.9, weight_decay=1e-5)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    images = torch.randn(batch, 3, size, size, device=device).to(
        memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,), device=device)

    def one_step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(step_model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    start = time.perf_counter()
    one_step()
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - start
    for _ in range(warmup):
        one_step()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = one_step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"framework": "timm-torch" + ("-compile" if compiled else ""), "model": name,
            "timm_model": TIMM_TWINS[name], "precision": "autocast-bfloat16", "batch": batch,
            "size": size, "images_per_sec": round(batch / statistics.median(times), 1),
            "compile_s": round(compile_s, 1), "loss": float(loss),
            "device": torch.cuda.get_device_name(), "torch": torch.__version__,
            "timm": timm.__version__}


def record(speed_files: list[str], device: str) -> dict:
    """Writes results/gpu.json and gpu.png from the JSON lists `speed --output` wrote."""
    from benchmarks import common

    speed = [row for path in speed_files for row in json.loads(Path(path).read_text())]
    summary = []
    for model in sorted({row["model"] for row in speed}):
        rows = [row for row in speed if row["model"] == model and "images_per_sec" in row]
        peer = next((row for row in rows if row["framework"] == "timm-torch"), None)
        for ours in (row for row in rows if row["framework"] == "keras-jax"):
            line = (f"GPU {model} {ours['size']}px bs{ours['batch']}: ours (Keras on JAX, "
                    f"{ours['precision']}) {ours['images_per_sec']:.0f} img/s")
            if peer:
                line += (f" vs timm {peer['timm_model']} AMP bf16 {peer['images_per_sec']:.0f} "
                         f"img/s ({ours['images_per_sec'] / peer['images_per_sec']:.2f}x)")
            if ours["loss"] != ours["loss"]:  # NaN
                line += " -- loss went NaN, figure not valid"
            summary.append(line)
    versions = {key: value for row in speed for key, value in row.items()
                if key in ("jax", "keras", "torch", "timm")}
    result = {"benchmark": "gpu", "speed": speed, "summary": summary,
              "machine": {key: value for key, value in common.machine_info().items()
                          if key in ("date", "commit")} | {"device": device, **versions}}
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (common.RESULTS_DIR / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    valid = [row for row in speed if "images_per_sec" in row and row["loss"] == row["loss"]]
    common.bar_plot(
        "gpu", f"Training images/s on {device}",
        {f"{row['model'].replace('efficientnet', 'en')}\n{row['framework']} "
         f"{row['precision'].replace('autocast-', '').replace('mixed_', '')}":
         row["images_per_sec"] for row in valid}, "images/s",
        note="ours: Keras 3 on JAX, jitted stateless step; timm: eager PyTorch, channels_last")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_jax", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    speed = sub.add_parser("speed", help="training images/s, ours (JAX) vs timm (AMP)")
    speed.add_argument("--models", default="efficientnet-b0,efficientnetv2-s")
    speed.add_argument("--batch", type=int, default=128)
    speed.add_argument("--steps", type=int, default=20)
    speed.add_argument("--warmup", type=int, default=5)
    speed.add_argument("--precision", default="mixed_bfloat16")
    speed.add_argument("--frameworks", default="ours,timm",
                       help="comma list of ours, timm, timm-compile (torch.compile)")
    speed.add_argument("--output", help="write all measurements to this JSON file")
    one = sub.add_parser("speed-one", help=argparse.SUPPRESS)
    one.add_argument("--framework", choices=["ours", "timm", "timm-compile"], required=True)
    one.add_argument("--model", required=True)
    one.add_argument("--batch", type=int, required=True)
    one.add_argument("--size", type=int, required=True)
    one.add_argument("--steps", type=int, required=True)
    one.add_argument("--warmup", type=int, required=True)
    one.add_argument("--precision", default="mixed_bfloat16")
    rec = sub.add_parser("record", help="write results/gpu.json from files brought back")
    rec.add_argument("--speed", action="append", default=[], help="JSON list from `speed`")
    rec.add_argument("--device", default="NVIDIA H100 80GB HBM3")
    args = parser.parse_args(argv)

    if args.command == "record":
        for line in record(args.speed, args.device)["summary"]:
            print(line)
        return 0
    if args.command == "speed-one":
        if args.framework == "ours":
            result = speed_ours(args.model, args.batch, args.size, args.steps, args.warmup,
                                args.precision)
        else:
            result = speed_timm(args.model, args.batch, args.size, args.steps, args.warmup,
                                args.framework == "timm-compile")
        print(json.dumps(result), flush=True)
        return 0
    from efficientnet.models import get_spec

    results = []
    for name in args.models.split(","):
        size = get_spec(name).train_size
        for framework in args.frameworks.split(","):
            # One process each: JAX and PyTorch each claim most of the GPU memory.
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.gpu_jax", "speed-one",
                 f"--framework={framework}", f"--model={name}", f"--batch={args.batch}",
                 f"--size={size}", f"--steps={args.steps}", f"--warmup={args.warmup}",
                 f"--precision={args.precision}"], capture_output=True, text=True)
            if proc.returncode != 0:
                result = {"framework": framework, "model": name,
                          "error": proc.stderr.strip().splitlines()[-1:]}
            else:
                result = json.loads(proc.stdout.strip().splitlines()[-1])
            print(json.dumps(result), flush=True)
            results.append(result)
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
