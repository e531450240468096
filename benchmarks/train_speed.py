"""Training speed of efficientnet-b0 on the CPU (224 px, batch 32, float32) next to its peers.

- ours: `efficientnet.models.build` trained by the project's engine (`trainer.run`, synthetic
  data, in-graph `iterations_per_loop` loop with EMA, weight decay and label smoothing);
- keras.applications.EfficientNetB0 trained by exactly the same engine (`model_fn=`);
- timm `efficientnet_b0` on PyTorch CPU in its own process, when torch and timm are installed
  (extra `bench`), with the same optimizer settings.

The statistic is images/s, the median over the loops after the first (which traces).
"""

from __future__ import annotations

import statistics
import tempfile

BATCH, SIZE = 32, 224


def engine_images_per_sec(model_fn, steps: int, loops: int) -> float:
    """images/s of the training engine: median over the loops after the first."""
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
    return statistics.median(record["images_per_sec"] for record in result.history[1:])


def keras_applications_b0(config, image_size):
    import keras

    return keras.applications.EfficientNetB0(
        weights=None, input_shape=(image_size, image_size, 3), classes=config.num_label_classes,
        classifier_activation=None)


def run(quick: bool = False) -> dict:
    from benchmarks.torch_peers import run_peer

    steps, loops = (2, 3) if quick else (5, 4)
    ours = engine_images_per_sec(None, steps, loops)
    peer = engine_images_per_sec(keras_applications_b0, steps, loops)
    timm = run_peer("train", f"--batch={BATCH}", f"--size={SIZE}",
                    f"--steps={3 if quick else 8}", "--warmup=2")
    result = {
        "settings": {"model": "efficientnet-b0", "image_size": SIZE, "batch": BATCH,
                     "precision": "float32", "steps_per_loop": steps, "loops": loops,
                     "xla": "off"},
        "ours_images_per_sec": round(ours, 3),
        "keras_applications_images_per_sec": round(peer, 3),
        "ratio_ours_vs_keras_applications": round(ours / peer, 3),
        "timm_images_per_sec": round(timm["images_per_sec"], 3) if timm else None,
    }
    summary = [f"efficientnet-b0 train {SIZE}px bs{BATCH}: ours {ours:.2f} img/s, "
               f"keras.applications {peer:.2f} img/s ({ours / peer:.2f}x)"]
    if timm:
        result["ratio_ours_vs_timm"] = round(ours / timm["images_per_sec"], 3)
        summary.append(f"timm efficientnet_b0 {timm['images_per_sec']:.2f} img/s "
                       f"(ours/timm {result['ratio_ours_vs_timm']:.2f}x)")
    else:
        summary.append("timm not installed (pip install -e '.[bench]'): no PyTorch peer")
    result["summary"] = summary
    return result
