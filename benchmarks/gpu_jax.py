"""GPU training speed: our models under Keras 3 on JAX vs timm's twins with AMP.

The GPU machines have no TensorFlow: the zoo's models (keras.layers / keras.ops only) train under
`KERAS_BACKEND=jax` with a jitted stateless step (the engine's RMSProp, label smoothing, weight
decay); timm's twin (bf16 autocast, channels_last) runs in its own process. Statistic: images/s,
median of the timed steps after a warm-up; a run whose loss is not finite is not counted.

    python -m benchmarks.gpu_jax speed [--models efficientnet-b0,efficientnetv2-s] [--batch 128]

writes `results/gpu.json`; bring it back and run `python -m benchmarks table --write`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
    times = []
    for _ in range(1 + warmup + steps):  # the first step compiles
        start = time.perf_counter()
        loss, state = step(state, images, labels)
        loss.block_until_ready()
        times.append(time.perf_counter() - start)
    rate = round(batch / statistics.median(times[1 + warmup:]), 1)
    return {"framework": "keras-jax", "model": name, "precision": precision, "batch": batch,
            "size": size, "images_per_sec": rate, "compile_s": round(times[0], 1),
            "loss": float(loss), "device": str(jax.devices()[0]), "jax": jax.__version__,
            "keras": keras.__version__}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_jax", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    speed = sub.add_parser("speed", help="training images/s, ours (JAX) vs timm (AMP)")
    speed.add_argument("--models", default="efficientnet-b0,efficientnetv2-s")
    one = sub.add_parser("speed-one", help=argparse.SUPPRESS)  # ours, in a process of its own
    one.add_argument("--model", required=True)
    one.add_argument("--size", type=int, required=True)
    for command in (speed, one):
        command.add_argument("--batch", type=int, default=128)
        command.add_argument("--steps", type=int, default=20)
        command.add_argument("--warmup", type=int, default=5)
        command.add_argument("--precision", default="mixed_bfloat16", help="ours' Keras policy")
    args = parser.parse_args(argv)
    if args.command == "speed-one":
        print(json.dumps(speed_ours(args.model, args.batch, args.size, args.steps, args.warmup,
                                    args.precision)), flush=True)
        return 0

    from benchmarks import common, table
    from benchmarks.torch_peers import run_peer
    from efficientnet.models import get_spec

    results = []
    for name in args.models.split(","):
        flags = [f"--batch={args.batch}", f"--size={get_spec(name).train_size}",
                 f"--steps={args.steps}", f"--warmup={args.warmup}"]
        # One process each: JAX and PyTorch each claim most of the GPU memory.
        try:
            ours = common.json_line([sys.executable, "-m", "benchmarks.gpu_jax", "speed-one",
                                     f"--model={name}", f"--precision={args.precision}", *flags],
                                    f"{name} on JAX")
        except RuntimeError as error:
            ours = {"framework": "keras-jax", "error": str(error).strip().splitlines()[-1:]}
        peer = run_peer("train", f"--model={TIMM_TWINS[name]}", "--device=cuda", *flags)
        for row in [ours] + ([peer] if peer else []):
            results.append({**row, "model": name})
            print(json.dumps(results[-1]), flush=True)
            if row.get("loss") != row.get("loss"):  # NaN
                print(f"{name} {row['framework']}: the loss went NaN, not counted")
    device = next((row["device"] for row in results if row.get("framework") == "timm-torch"),
                  "GPU")
    path = common.write_result("gpu", {"speed": results, "machine": {"device": device}})
    print("\n".join(table.markdown_rows("gpu", json.loads(path.read_text()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
