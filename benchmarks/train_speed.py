"""Training speed of efficientnet-b0 (224 px, batch 32, float32) next to its peers.

- ours: `efficientnet.models.build` trained by the project's engine (`trainer.run`, synthetic data,
  in-graph `iterations_per_loop` loop with EMA, weight decay and label smoothing);
- keras.applications.EfficientNetB0 trained by exactly the same engine (`model_fn=`);
- timm `efficientnet_b0` on PyTorch CPU, when torch and timm are installed (extra `bench`).

It also profiles a B0 training step (TensorFlow profiler, op time by type, grouped into depthwise
conv, other convs, batch norm, swish, elementwise work; forward and backward) to show where a step
goes. Run through `python -m benchmarks`, TensorFlow uses its oneDNN kernels as the toolkit's
commands do (efficientnet/__init__.py); the result records whether they were on.
"""

from __future__ import annotations

import os
import re
import statistics
import tempfile
import time

import numpy as np

from benchmarks import common

BATCH, SIZE = 32, 224


def engine_images_per_sec(model_fn, steps: int, loops: int) -> dict:
    """images/s of the training engine: median over loops after the first (which traces)."""
    import keras

    from efficientnet.train import trainer
    from efficientnet.train.recipes import get_recipe

    keras.backend.clear_session()
    with tempfile.TemporaryDirectory() as model_dir:
        config = get_recipe("tpu-rmsprop").replace(
            model_name="efficientnet-b0", mode="train", use_synthetic_data=True,
            model_dir=model_dir, train_batch_size=BATCH, image_size=SIZE,
            iterations_per_loop=steps, train_steps=steps * loops,
            save_checkpoints_steps=steps * loops, num_label_classes=1000, xla="off")
        result = trainer.run(config, model_fn=model_fn)
    rates = [record["images_per_sec"] for record in result.history[1:]]
    return {"images_per_sec": statistics.median(rates), "loops": rates}


def keras_applications_b0(config, image_size):
    import keras

    return keras.applications.EfficientNetB0(
        weights=None, input_shape=(image_size, image_size, 3), classes=config.num_label_classes,
        classifier_activation=None)


def timm_images_per_sec(steps: int, warmup: int) -> dict | None:
    """images/s of timm efficientnet_b0 on PyTorch CPU (own process), None without torch/timm."""
    from benchmarks.torch_peers import run_peer

    return run_peer("train", f"--batch={BATCH}", f"--size={SIZE}", f"--steps={steps}",
                    f"--warmup={warmup}")


# Op type -> kind of work, for the step profile. oneDNN kernels carry a _MklNative / _Mkl prefix.
_KINDS = (
    ("depthwise conv", ("DepthwiseConv2dNative",)),
    ("conv (1x1, stem, SE, head)", ("Conv2D", "FusedConv2D")),
    ("batch norm", ("FusedBatchNorm",)),
    ("swish / sigmoid", ("Sigmoid", "Swish")),
    ("elementwise (SE scale, residual, drop-connect)", ("Mul", "AddV2", "AddN", "Tile", "SelectV2",
                                                        "GreaterEqual", "Sum", "Mean")),
)


_OP_EVENT = re.compile(r"^([\w./-]+):(\w+)$")


def op_kind(op_type: str) -> str:
    """The kind of work of a TensorFlow op type as the profiler names it."""
    base = op_type.removeprefix("_MklNative").removeprefix("_Mkl").removeprefix("_")
    for kind, stems in _KINDS:
        if any(base.startswith(stem) for stem in stems):
            return kind
    return "other"


def op_direction(node_name: str, op_type: str) -> str:
    """"backward" for ops of the gradient computation (by node name, or a gradient op type)."""
    gradient_node = node_name.startswith(("gradient_tape/", "gradients/")) or \
        "/gradient_tape/" in node_name or "/gradients/" in node_name
    gradient_op = "Backprop" in op_type or op_type.endswith(("Grad", "GradV3"))
    return "backward" if gradient_node or gradient_op else "forward"


def group_op_seconds(op_seconds: dict) -> dict:
    """{op type: {"forward": s, "backward": s}} -> the same per kind of work (op_kind)."""
    grouped: dict[str, dict[str, float]] = {}
    for op_type, times in op_seconds.items():
        slot = grouped.setdefault(op_kind(op_type), {"forward": 0.0, "backward": 0.0})
        for direction, seconds in times.items():
            slot[direction] += seconds
    return grouped


def op_seconds_from_trace(log_dir: str) -> dict:
    """{op type: {"forward": s, "backward": s}} summed over the TensorFlow op events of the
    profile in `log_dir`."""
    import glob

    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # the profiler's own format

    paths = glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise FileNotFoundError(f"no *.xplane.pb profile under {log_dir}")
    space = xplane_pb2.XSpace()
    with open(paths[0], "rb") as handle:
        space.ParseFromString(handle.read())
    seconds: dict[str, dict[str, float]] = {}
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                # TensorFlow op events are named "<node name>:<op type>" (other events:
                # "ExecutorState::Process", "EagerLocalExecute: __inference_...").
                match = _OP_EVENT.match(name)
                if match is None:
                    continue
                node, op_type = match.groups()
                times = seconds.setdefault(op_type, {"forward": 0.0, "backward": 0.0})
                times[op_direction(node, op_type)] += event.duration_ps / 1e12
    return seconds


def step_profile(steps: int) -> dict:
    """Op time of B0 training steps (224 px, batch 32): the engine's model (fused batch norm),
    forward, loss, backward and an SGD update, traced with the TensorFlow profiler. Returns
    {"kinds": {kind: {"forward": s, "backward": s}}, "ops": {op type: the same},
    "step_seconds"}, per step; op times add up over the threads that ran them."""
    import keras
    import tensorflow as tf

    from efficientnet.train.recipes import get_recipe
    from efficientnet.train.trainer import default_model_fn

    keras.backend.clear_session()
    config = get_recipe("tpu-rmsprop").replace(model_name="efficientnet-b0",
                                               num_label_classes=1000)
    model = default_model_fn(config, SIZE)
    optimizer = keras.optimizers.SGD(0.01)
    images = tf.random.normal([BATCH, SIZE, SIZE, 3], seed=0)
    labels = tf.one_hot(tf.range(BATCH) % 1000, 1000)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels, logits))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    train_step().numpy()  # trace and warm up
    with tempfile.TemporaryDirectory() as log_dir:
        tf.profiler.experimental.start(log_dir)
        start = time.perf_counter()
        for _ in range(steps):
            train_step().numpy()
        wall = time.perf_counter() - start
        tf.profiler.experimental.stop()
        ops = {op: {direction: value / steps for direction, value in times.items()}
               for op, times in op_seconds_from_trace(log_dir).items()}
    return {"kinds": group_op_seconds(ops), "ops": ops, "step_seconds": wall / steps}


def run(quick: bool = False) -> dict:
    steps, loops = (2, 3) if quick else (5, 4)
    ours = engine_images_per_sec(None, steps, loops)
    peer = engine_images_per_sec(keras_applications_b0, steps, loops)
    timm = timm_images_per_sec(steps=3 if quick else 8, warmup=2)
    profile = step_profile(steps=1 if quick else 2)
    step_seconds = BATCH / ours["images_per_sec"]
    result = {
        "settings": {"model": "efficientnet-b0", "image_size": SIZE, "batch": BATCH,
                     "precision": "float32", "steps_per_loop": steps, "loops": loops,
                     "xla": "off"},
        "ours_images_per_sec": round(ours["images_per_sec"], 3),
        "keras_applications_images_per_sec": round(peer["images_per_sec"], 3),
        "ratio_ours_vs_keras_applications": round(ours["images_per_sec"]
                                                  / peer["images_per_sec"], 3),
        "loops": {"ours": ours["loops"], "keras_applications": peer["loops"]},
        "step_profile": {
            "kinds": {kind: {d: round(v, 3) for d, v in times.items()}
                      for kind, times in profile["kinds"].items()},
            "ops": {op: {d: round(v, 4) for d, v in times.items()}
                    for op, times in sorted(profile["ops"].items(),
                                            key=lambda kv: -sum(kv[1].values()))
                    if sum(times.values()) >= 1e-3},
            "profiled_step_seconds": round(profile["step_seconds"], 3),
            "onednn": common.onednn_enabled(),
        },
        "step_seconds": round(step_seconds, 3),
    }
    labels = ["ours (engine)", "keras.applications (same engine)"]
    values = [result["ours_images_per_sec"], result["keras_applications_images_per_sec"]]
    summary = [
        f"efficientnet-b0 train 224px bs{BATCH}: ours {values[0]:.2f} img/s, "
        f"keras.applications {values[1]:.2f} img/s (ratio {result['ratio_ours_vs_keras_applications']:.2f}x)"
    ]
    if timm:
        result["timm_images_per_sec"] = round(timm["images_per_sec"], 3)
        result["timm_threads"] = timm["threads"]
        result["ratio_ours_vs_timm"] = round(ours["images_per_sec"] / timm["images_per_sec"], 3)
        labels.append("timm (PyTorch CPU)")
        values.append(result["timm_images_per_sec"])
        summary.append(f"timm efficientnet_b0 {values[-1]:.2f} img/s "
                       f"(ours/timm {result['ratio_ours_vs_timm']:.2f}x)")
    else:
        result["timm_images_per_sec"] = None
        summary.append("timm not installed (pip install -e '.[bench]'): no PyTorch peer")
    kinds = {kind: sum(times.values()) for kind, times in profile["kinds"].items()}
    total = sum(kinds.values())
    shares = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in
                       sorted(kinds.items(), key=lambda kv: -kv[1]))
    summary.append(f"op time shares of a training step: {shares}")
    result["summary"] = summary

    common.bar_plot("train", f"efficientnet-b0 training, {SIZE}px, batch {BATCH}, float32, CPU",
             labels, values, "images / second",
             note=f"{os.cpu_count()} cores; median of loops after the first")
    _breakdown_plot(profile["kinds"])
    return result


def _breakdown_plot(kinds: dict) -> None:
    order = sorted(kinds, key=lambda k: -sum(kinds[k].values()))
    labels = [f"{kind} {direction}" for kind in order for direction in ("forward", "backward")]
    values = [kinds[kind][direction] for kind in order for direction in ("forward", "backward")]
    common.bar_plot("train_breakdown",
                    f"B0 training step: op time by kind ({SIZE}px, batch {BATCH})",
             labels, values, "seconds per step (summed over threads)")


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=True), indent=2, default=np.asarray))
