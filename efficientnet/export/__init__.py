"""Export to SavedModel, TFLite fp32/fp16/int8 and ONNX with a parity report; runtimes for them.

`python -m efficientnet.export` is the CLI; `run_export(ExportConfig)` what it calls;
`export_model(model, config)` exports an already built Keras model; `load_predictor(path)` runs
any exported file.
"""

from efficientnet.export.config import FORMATS, ExportConfig, ExportError, parse_formats

__all__ = [
    "FORMATS",
    "ExportConfig",
    "ExportError",
    "export_model",
    "load_predictor",
    "parse_formats",
    "run_export",
]


def __getattr__(name):
    # TensorFlow loads only when a function that needs it is asked for.
    if name in ("export_model", "run_export"):
        from efficientnet.export import exporter

        return getattr(exporter, name)
    if name == "load_predictor":
        from efficientnet.export.runtime import load_predictor

        return load_predictor
    raise AttributeError(name)
