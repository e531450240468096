"""Training speed of efficientnet-b0 (224 px, batch 32, float32) next to its peers.

- ours: `efficientnet.models.build` trained by the project's engine (`trainer.run`, synthetic data,
  in-graph `iterations_per_loop` loop with EMA, weight decay and label smoothing);
- keras.applications.EfficientNetB0 trained by exactly the same engine (`model_fn=`);
- timm `efficientnet_b0` on PyTorch CPU, when torch and timm are installed (extra `bench`).

It also times the forward + backward pass of each layer kind of B0 at the same shapes, to show
where a training step goes (depthwise conv, BatchNorm, swish, 1x1 conv, the rest).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import numpy as np

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


def layer_breakdown(reps: int) -> dict:
    """Seconds of forward + backward per layer kind of B0 at 224 px, batch 32."""
    import keras
    import tensorflow as tf

    from efficientnet.models import build

    keras.backend.clear_session()
    model = build("efficientnet-b0", image_size=SIZE)
    groups: dict[str, list] = {"depthwise conv": [], "batch norm": [], "swish": [],
                               "1x1 conv": [], "other conv (stem, SE)": []}
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kind = "depthwise conv"
        elif isinstance(layer, keras.layers.BatchNormalization):
            kind = "batch norm"
        elif isinstance(layer, keras.layers.Activation):
            kind = "swish"
        elif isinstance(layer, keras.layers.Conv2D):
            spatial = layer.input.shape[1] > 1
            kind = "1x1 conv" if layer.kernel_size == (1, 1) and spatial else \
                "other conv (stem, SE)"
        else:
            continue
        groups[kind].append(layer)

    seconds = {}
    for kind, members in groups.items():
        inputs = [tf.random.normal((BATCH, *layer.input.shape[1:])) for layer in members]

        @tf.function
        def forward_backward(inputs=inputs, members=members):
            total = tf.constant(0.0)
            for layer, x in zip(members, inputs):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = layer(x, training=True)
                grads = tape.gradient(y, [x] + layer.trainable_weights,
                                      output_gradients=tf.ones_like(y))
                total += tf.add_n([tf.reduce_sum(g) for g in grads])
            return total

        forward_backward()  # trace
        runs = []
        for _ in range(reps):
            start = time.perf_counter()
            forward_backward().numpy()
            runs.append(time.perf_counter() - start)
        seconds[kind] = statistics.median(runs)
    return seconds


def run(quick: bool = False) -> dict:
    steps, loops = (2, 3) if quick else (5, 4)
    ours = engine_images_per_sec(None, steps, loops)
    peer = engine_images_per_sec(keras_applications_b0, steps, loops)
    timm = timm_images_per_sec(steps=3 if quick else 8, warmup=2)
    breakdown = layer_breakdown(reps=2 if quick else 3)
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
        "layer_breakdown_seconds": {k: round(v, 3) for k, v in breakdown.items()},
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
    total = sum(breakdown.values())
    shares = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in
                       sorted(breakdown.items(), key=lambda kv: -kv[1]))
    summary.append(f"layer fwd+bwd time shares: {shares}")
    result["summary"] = summary

    from benchmarks.common import bar_plot

    bar_plot("train", f"efficientnet-b0 training, {SIZE}px, batch {BATCH}, float32, CPU",
             labels, values, "images / second",
             note=f"{os.cpu_count()} cores; median of loops after the first")
    _breakdown_plot(breakdown)
    return result


def _breakdown_plot(breakdown: dict) -> None:
    from benchmarks.common import bar_plot

    kinds = sorted(breakdown, key=lambda k: -breakdown[k])
    bar_plot("train_breakdown", "B0 forward+backward time by layer kind (224px, batch 32)",
             kinds, [breakdown[k] for k in kinds], "seconds per step")


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=True), indent=2, default=np.asarray))
