"""Inference latency of an exported efficientnet-b0 (224 px, random weights) per format.

Ours: SavedModel, TFLite fp32 / fp16 / int8 and ONNX through `load_predictor` (what
`python -m efficientnet.infer` uses). Peers: keras.applications' B0 as TFLite fp32 and int8
(our converter settings), timm's `efficientnet_b0` through ONNX and onnxruntime. Every
contender takes float pixels in [0, 255] and returns probabilities, normalisation included.
Statistic: batch-1 p50, lowest of interleaved rounds, same thread count.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from efficientnet.export.config import ExportConfig

SIZE = 224
# What `keras.applications.EfficientNetB0(weights="imagenet")` loads into its Normalization
# layer (on pixels / 255): the ImageNet mean and the squared standard deviation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_VARIANCE = (0.229**2, 0.224**2, 0.225**2)


def _keras_applications_tflite(directory: str, calibration: np.ndarray,
                               size: int = SIZE) -> dict[str, str]:
    """keras.applications' B0 as TFLite fp32 and int8, with the signature our export writes
    (`serving_default`, float pixels in, "probabilities" out), so `load_predictor` runs it."""
    import keras
    import tensorflow as tf

    from efficientnet.export.converters import set_full_integer

    model = keras.applications.EfficientNetB0(weights=None, input_shape=(size, size, 3))
    _imagenet_normalization(model)
    module = tf.Module()
    module.model_variables = [getattr(v, "value", v) for v in model.variables]
    module.serve = tf.function(lambda images: {"probabilities": model(images, training=False)},
                               input_signature=[tf.TensorSpec([None, size, size, 3])])
    saved = os.path.join(directory, "keras_applications_b0")
    tf.saved_model.save(module, saved, signatures={"serving_default": module.serve})
    paths = {}
    for kind in ("fp32", "int8"):
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        if kind == "int8":  # our export's settings, its default input/output type included
            set_full_integer(converter, lambda: ([image[None]] for image in calibration),
                             ExportConfig.int8_io_type)
        paths[kind] = os.path.join(directory, f"keras_applications_b0_{kind}.tflite")
        with open(paths[kind], "wb") as handle:
            handle.write(converter.convert())
    return paths


def _imagenet_normalization(model) -> None:
    """Gives a weights=None keras.applications model the input normalisation a deployed one has:
    at mean 0 / variance 1 the TFLite converter drops the layer, and the peer would skip the
    per-pixel subtraction every deployment (and our export) runs."""
    layer = next(layer for layer in model.layers if type(layer).__name__ == "Normalization")
    mean, variance, count = layer.get_weights()
    layer.set_weights([np.asarray(IMAGENET_MEAN, mean.dtype).reshape(mean.shape),
                       np.asarray(IMAGENET_VARIANCE, variance.dtype).reshape(variance.shape),
                       count])
    layer.finalize_state()  # the layer reads its adapted statistics from here on


def best_of_rounds(contenders: dict, rounds: int, measure) -> dict:
    """{name: the `measure(predictor)` reading with the lowest batch-1 p50 over `rounds`
    interleaved rounds}: a shared host's speed drifts within minutes, and one pass per
    contender would put that drift in the ratios."""
    best: dict = {}
    for _ in range(rounds):
        for name, predictor in contenders.items():
            reading = {**measure(predictor), "rounds": rounds}
            if name not in best or reading["batch1_p50_ms"] < best[name]["batch1_p50_ms"]:
                best[name] = reading
    return best


def compare(figures: dict) -> dict:
    """The fastest of ours ("ours ..." names) and of the peers at batch 1, and their ratio."""
    ok = {k: v["batch1_p50_ms"] for k, v in figures.items() if "error" not in v}
    best_ours = min((k for k in ok if k.startswith("ours")), key=ok.get)
    best_peer = min((k for k in ok if not k.startswith("ours")), key=ok.get)
    return {"best_ours": best_ours, "best_peer": best_peer,
            "ratio_best_ours_vs_best_peer": round(ok[best_ours] / ok[best_peer], 3)}


def run(quick: bool = False) -> dict:
    import keras

    from benchmarks.torch_peers import run_peer
    from efficientnet import infer, models
    from efficientnet.export import export_model, load_predictor

    threads = os.cpu_count() or 1
    runs, rounds = (10, 2) if quick else (40, 5)
    calibration = np.random.default_rng(0).uniform(0, 255, (8, SIZE, SIZE, 3)).astype("float32")
    contenders, errors = {}, {}
    with tempfile.TemporaryDirectory() as directory:
        keras.backend.clear_session()
        config = ExportConfig(model_name="efficientnet-b0", num_steps=8,
                              export_dir=os.path.join(directory, "ours"))
        report = export_model(models.build("efficientnet-b0", image_size=SIZE), config)
        for fmt, entry in report["formats"].items():
            if "error" in entry:
                errors[f"ours {fmt}"] = {"error": entry["error"]}
            else:
                contenders[f"ours {fmt}"] = load_predictor(
                    os.path.join(config.export_dir, entry["file"]), threads)
        for kind, path in _keras_applications_tflite(directory, calibration).items():
            contenders[f"keras.applications tflite {kind}"] = load_predictor(path, threads)
        timm_path = os.path.join(directory, "timm_b0.onnx")
        if run_peer("onnx", f"--size={SIZE}", f"--output={timm_path}") is not None:
            contenders["timm onnxruntime"] = load_predictor(timm_path, threads)
        figures = {**best_of_rounds(contenders, rounds,
                                    lambda predictor: infer.benchmark(predictor, runs=runs)),
                   **errors}
    return {"settings": {"image_size": SIZE, "threads": threads, "batch1_runs": runs,
                         "rounds": rounds}, "figures": figures, **compare(figures)}
