"""Training speed on the CPU: efficientnet-b0 (224 px, batch 32, float32) trained by the engine
(`trainer.run`, synthetic data) against keras.applications' B0 through the same engine and timm's
`efficientnet_b0` on PyTorch (own process, same RMSProp settings). Statistic: images/s, median of
the loops after the first (which traces)."""

from __future__ import annotations

import statistics
import tempfile

BATCH, SIZE = 32, 224


def engine_images_per_sec(model_fn, steps: int, loops: int) -> float:
    """images/s of the training engine: median over the loops after the first."""
    import keras

    from efficientnet.config import get_experiment
    from efficientnet.train import trainer

    keras.backend.clear_session()
    with tempfile.TemporaryDirectory() as model_dir:
        config = get_experiment(
            "b0-imagenet-rmsprop", model_name="efficientnet-b0", mode="train",
            use_synthetic_data=True, model_dir=model_dir, train_batch_size=BATCH,
            image_size=SIZE, iterations_per_loop=steps, train_steps=steps * loops,
            save_checkpoints_steps=steps * loops, num_label_classes=1000, xla="off")
        result = trainer.run(config, model_fn=model_fn)
    return statistics.median(record["images_per_sec"] for record in result.history[1:])


def keras_applications_b0(config, image_size):
    """keras.applications' B0 as the engine's `model_fn`: 1000 classes, logits out."""
    import keras

    return keras.applications.EfficientNetB0(
        weights=None, input_shape=(image_size, image_size, 3), classes=1000,
        classifier_activation=None)


def run(quick: bool = False) -> dict:
    from benchmarks.torch_peers import run_peer

    steps, loops = (2, 3) if quick else (5, 4)
    ours = engine_images_per_sec(None, steps, loops)
    peer = engine_images_per_sec(keras_applications_b0, steps, loops)
    timm = run_peer("train", f"--batch={BATCH}", f"--size={SIZE}",
                    f"--steps={3 if quick else 8}", "--warmup=2")
    timm_rate = timm["images_per_sec"] if timm else None
    return {
        "settings": {"model": "efficientnet-b0", "image_size": SIZE, "batch": BATCH,
                     "precision": "float32", "steps_per_loop": steps, "loops": loops,
                     "xla": "off"},
        "ours_images_per_sec": round(ours, 3),
        "keras_applications_images_per_sec": round(peer, 3),
        "ratio_ours_vs_keras_applications": round(ours / peer, 3),
        "timm_images_per_sec": round(timm_rate, 3) if timm else None,
        "ratio_ours_vs_timm": round(ours / timm_rate, 3) if timm else None,
    }
