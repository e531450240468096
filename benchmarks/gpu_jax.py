"""GPU training speed: our models under the Keras JAX backend vs timm with AMP.

The GPU machines have JAX and PyTorch but no TensorFlow, so this module imports neither
TensorFlow nor the training engine: it builds the zoo's models (keras.layers / keras.ops only)
under `KERAS_BACKEND=jax` and trains them with a jitted stateless step (the engine's RMSProp,
label smoothing and weight decay), next to timm's twin of each model (torch.autocast bfloat16,
channels_last), each in its own process. The statistic is images/s, the median of the timed
steps after a warm-up.

    python -m benchmarks.gpu_jax speed [--models efficientnet-b0,efficientnetv2-s] [--batch 128]

writes `benchmarks/results/gpu.json`; bring it back from the GPU machine and run
`python -m benchmarks table --write`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

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


def _timed_steps(one_step, sync, batch: int, warmup: int, steps: int):
    """(last loss, seconds of the first step, images/s: median of `steps` timed steps after
    `warmup` more); `sync(loss)` waits for the device."""
    start = time.perf_counter()
    loss = one_step()
    sync(loss)
    compile_s = round(time.perf_counter() - start, 1)
    for _ in range(warmup):
        loss = one_step()
    sync(loss)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = one_step()
        sync(loss)
        times.append(time.perf_counter() - start)
    return loss, compile_s, round(batch / statistics.median(times), 1)


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

    def one_step():
        nonlocal state
        loss, state = step(state, images, labels)
        return loss

    loss, compile_s, rate = _timed_steps(one_step, lambda loss: loss.block_until_ready(),
                                         batch, warmup, steps)
    return {"framework": "keras-jax", "model": name, "precision": precision, "batch": batch,
            "size": size, "images_per_sec": rate, "compile_s": compile_s, "loss": float(loss),
            "device": str(jax.devices()[0]), "jax": jax.__version__,
            "keras": keras.__version__}


def speed_timm(name: str, batch: int, size: int, steps: int, warmup: int) -> dict:
    import timm
    import torch

    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    model = timm.create_model(TIMM_TWINS[name], num_classes=1000).to(device).train()
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=0.016 * batch / 256, alpha=0.9,
                                    eps=1e-3, momentum=0.9, weight_decay=1e-5)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    images = torch.randn(batch, 3, size, size, device=device).to(
        memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,), device=device)

    def one_step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    loss, compile_s, rate = _timed_steps(one_step, lambda loss: torch.cuda.synchronize(),
                                         batch, warmup, steps)
    return {"framework": "timm-torch", "model": name,
            "timm_model": TIMM_TWINS[name], "precision": "autocast-bfloat16", "batch": batch,
            "size": size, "images_per_sec": rate, "compile_s": compile_s, "loss": float(loss),
            "device": torch.cuda.get_device_name(), "torch": torch.__version__,
            "timm": timm.__version__}


def summarize(speed: list[dict]) -> list[str]:
    """One line per measurement of ours, against timm's for the same model."""
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
    return summary


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
    speed.add_argument("--frameworks", default="ours,timm", help="comma list of ours, timm")
    one = sub.add_parser("speed-one", help=argparse.SUPPRESS)
    one.add_argument("--framework", choices=["ours", "timm"], required=True)
    one.add_argument("--model", required=True)
    one.add_argument("--batch", type=int, required=True)
    one.add_argument("--size", type=int, required=True)
    one.add_argument("--steps", type=int, required=True)
    one.add_argument("--warmup", type=int, required=True)
    one.add_argument("--precision", default="mixed_bfloat16")
    args = parser.parse_args(argv)

    if args.command == "speed-one":
        if args.framework == "ours":
            result = speed_ours(args.model, args.batch, args.size, args.steps, args.warmup,
                                args.precision)
        else:
            result = speed_timm(args.model, args.batch, args.size, args.steps, args.warmup)
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
    from benchmarks import common

    device = next((row["device"] for row in results if row.get("framework") == "timm-torch"),
                  "GPU")
    summary = summarize(results)
    path = common.write_result("gpu", {"speed": results, "summary": summary,
                                       "machine": {"device": device}})
    print("\n".join(summary) + f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
