"""One `Predictor` interface over every exported format: pixels in [0, 255] -> probabilities.

`load_predictor(path)` picks the runtime from the path: a directory is a SavedModel, `.tflite` runs
in the TFLite interpreter, `.onnx` in onnxruntime. Quantized TFLite inputs and outputs are
(de)quantized here so callers always see float32 probabilities.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from efficientnet.export.config import (
    BYTES_INPUT,
    BYTES_SIGNATURE,
    PIXELS_INPUT,
    PIXELS_SIGNATURE,
    ExportError,
)


class Predictor:
    """Runs one exported model; subclasses set `format`, `image_size`, `num_classes`."""

    format = "unknown"

    def __init__(self, path: str, num_threads: int | None = None):
        self.path = path
        self.num_threads = num_threads or os.cpu_count() or 1
        self.image_size = 0
        self.num_classes = 0

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """float32 [B, S, S, 3] pixels in [0, 255] -> float32 probabilities [B, C]."""
        raise NotImplementedError


class SavedModelPredictor(Predictor):
    format = "saved_model"

    def __init__(self, path: str, num_threads: int | None = None):
        super().__init__(path, num_threads)
        import tensorflow as tf

        self._tf = tf
        if num_threads:
            try:  # only possible before TensorFlow's runtime starts
                tf.config.threading.set_intra_op_parallelism_threads(num_threads)
            except RuntimeError:
                pass
        configured = tf.config.threading.get_intra_op_parallelism_threads()
        self.num_threads = configured or os.cpu_count() or 1
        try:
            self._loaded = tf.saved_model.load(path)
        except (OSError, ValueError, tf.errors.OpError) as error:
            raise ExportError(f"Cannot load SavedModel {path}: {error}") from error
        signatures = self._loaded.signatures
        if PIXELS_SIGNATURE not in signatures:
            raise ExportError(f"SavedModel {path} has no {PIXELS_SIGNATURE!r} signature.")
        self._pixels_fn = signatures[PIXELS_SIGNATURE]
        self._bytes_fn = signatures.get(BYTES_SIGNATURE)
        input_spec = self._pixels_fn.structured_input_signature[1][PIXELS_INPUT]
        self.image_size = int(input_spec.shape[1])
        self.num_classes = int(self._pixels_fn.structured_outputs["probabilities"].shape[-1])

    def predict(self, pixels):
        outputs = self._pixels_fn(**{PIXELS_INPUT: self._tf.constant(pixels, self._tf.float32)})
        return outputs["probabilities"].numpy()

    def predict_bytes(self, encoded_images: list[bytes]) -> dict[str, np.ndarray]:
        """Runs `serving_bytes` on encoded JPEG/PNG strings; returns every output as numpy."""
        if self._bytes_fn is None:
            raise ExportError(f"SavedModel {self.path} has no {BYTES_SIGNATURE!r} signature.")
        tensor = self._tf.constant(encoded_images, self._tf.string)
        outputs = self._bytes_fn(**{BYTES_INPUT: tensor})
        return {key: value.numpy() for key, value in outputs.items()}


class TFLitePredictor(Predictor):
    format = "tflite"

    def __init__(self, path: str, num_threads: int | None = None):
        super().__init__(path, num_threads)
        import tensorflow as tf

        check_tflite_file(path)  # the interpreter trusts the file: a truncated one segfaults it
        with warnings.catch_warnings():  # tf.lite.Interpreter's move-to-LiteRT notice
            warnings.simplefilter("ignore")
            try:
                self._interpreter = tf.lite.Interpreter(
                    model_path=path, num_threads=self.num_threads
                )
            except ValueError as error:
                raise ExportError(f"Cannot load TFLite model {path}: {error}") from error
        signatures = self._interpreter.get_signature_list()
        key = PIXELS_SIGNATURE if PIXELS_SIGNATURE in signatures else next(iter(signatures), None)
        if key is None:
            raise ExportError(f"TFLite model {path} has no signature to run.")
        self._runner = self._interpreter.get_signature_runner(key)
        self._input_name = signatures[key]["inputs"][0]
        self._input = self._runner.get_input_details()[self._input_name]
        self._output = self._runner.get_output_details()["probabilities"]
        self.image_size = int(self._input["shape_signature"][1])
        self.num_classes = int(self._output["shape_signature"][-1])
        self.input_dtype = np.dtype(self._input["dtype"])
        scale, zero_point = self._input["quantization"]
        self.input_quantization = (float(scale), int(zero_point))
        self._batch_shape = None
        if getattr(self._runner, "_subgraph_index", None) == 0:
            # The signature is the main graph: `_invoke` runs it directly (a live signature
            # runner would make the interpreter refuse to resize its input).
            self._runner = None

    def predict(self, pixels):
        pixels = quantize_input(pixels, self._input)
        if self._runner is None:
            probabilities = self._invoke(pixels)
        else:
            probabilities = self._runner(**{self._input_name: pixels})["probabilities"]
        if probabilities.dtype != np.float32:
            scale, zero_point = self._output["quantization"]
            probabilities = (probabilities.astype(np.float32) - zero_point) * scale
        return probabilities

    def _invoke(self, pixels):
        """The signature's graph on `pixels`, reading only the probabilities: the signature
        runner resizes the input and reallocates every tensor on each call and copies every
        output (~25 us of a 1.8 ms B0 int8 call); here that happens when the batch changes."""
        interpreter = self._interpreter
        if self._batch_shape != pixels.shape:
            interpreter.resize_tensor_input(self._input["index"], pixels.shape)
            interpreter.allocate_tensors()
            self._batch_shape = pixels.shape
        interpreter.set_tensor(self._input["index"], pixels)
        interpreter.invoke()
        return interpreter.get_tensor(self._output["index"])


def quantize_input(pixels, detail: dict) -> np.ndarray:
    """Float pixels as a TFLite input wants them: unchanged for float inputs, else quantised
    with the input's (scale, zero_point) and clipped to its integer type."""
    pixels = np.asarray(pixels, np.float32)
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return pixels
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    # round(pixels / scale + zero_point), clipped, in one float32 buffer (in place: 47 us for
    # one 224 px image, 61 with a temporary per step)
    quantized = np.divide(pixels, np.float32(scale))
    if zero_point:
        np.add(quantized, np.float32(zero_point), out=quantized)
    np.rint(quantized, out=quantized)
    np.clip(quantized, info.min, info.max, out=quantized)
    return quantized.astype(dtype)


class OnnxPredictor(Predictor):
    format = "onnx"

    def __init__(self, path: str, num_threads: int | None = None):
        super().__init__(path, num_threads)
        try:
            import onnxruntime as ort
        except ImportError as error:
            raise ExportError(
                "Running .onnx models needs onnxruntime: pip install -e '.[export]'"
            ) from error
        check_onnx_file(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.num_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                path, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own exception types
            raise ExportError(f"Cannot load ONNX model {path}: {error}") from error
        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        self.image_size = int(model_input.shape[1])
        outputs = {output.name: output for output in self._session.get_outputs()}
        if "probabilities" not in outputs:
            raise ExportError(f"ONNX model {path} has no 'probabilities' output.")
        self.num_classes = int(outputs["probabilities"].shape[-1])

    def predict(self, pixels):
        feed = {self._input_name: np.asarray(pixels, np.float32)}
        return self._session.run(["probabilities"], feed)[0]


def check_tflite_file(path: str) -> None:
    """ExportError unless `path` is a whole TFLite flatbuffer: the "TFL3" identifier, and every
    table, vector and buffer of the model inside the file (a Python walk of the schema, which
    raises on any offset past the end, where the native interpreter would read out of bounds)."""
    try:
        with open(path, "rb") as handle:
            data = bytearray(handle.read())
    except OSError as error:
        raise ExportError(f"Cannot read TFLite model {path}: {error.strerror}") from error
    if len(data) < 8 or bytes(data[4:8]) != b"TFL3":
        raise ExportError(f"{path} is not a TFLite model (no TFL3 flatbuffer identifier): give "
                          "a .tflite file written by `python -m efficientnet.export`")
    from tensorflow.lite.python import schema_py_generated as schema

    try:
        model = schema.ModelT.InitFromPackedBuf(data, 0)
        for buffer in model.buffers or ():
            offset, size = int(buffer.offset or 0), int(buffer.size or 0)
            if offset and offset + size > len(data):  # weights stored after the flatbuffer
                raise ValueError(f"buffer data at {offset}+{size} past the end")
    except Exception as error:  # struct.error, IndexError, ValueError from a broken layout
        raise ExportError(f"TFLite model {path} is truncated or corrupt ({len(data)} bytes; "
                          f"{str(error).splitlines()[0][:120] if str(error) else type(error).__name__})"
                          ": export it again") from None


def check_onnx_file(path: str) -> None:
    """ExportError unless `path` parses as an ONNX model protobuf (where onnx is installed)."""
    try:
        import onnx
    except ImportError:
        return
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as error:  # DecodeError and friends
        raise ExportError(f"ONNX model {path} is truncated or corrupt ({type(error).__name__}): "
                          "export it again") from None
    if not model.graph.node:
        raise ExportError(f"ONNX model {path} has no graph: export it again")


def detect_format(path: str) -> str:
    """`saved_model`, `tflite` or `onnx`, from the path; a clear error for anything else."""
    if not os.path.exists(path):
        raise ExportError(f"Model {path} does not exist.")
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise ExportError(f"{path} is a directory without saved_model.pb: not a SavedModel.")
        return "saved_model"
    extension = os.path.splitext(path)[1].lower()
    if extension == ".tflite":
        return "tflite"
    if extension == ".onnx":
        return "onnx"
    raise ExportError(
        f"Cannot tell the format of {path}: give a SavedModel directory, a .tflite or .onnx file."
    )


def load_predictor(path: str, num_threads: int | None = None) -> Predictor:
    """The predictor for a SavedModel directory, a .tflite or an .onnx file."""
    cls = {"saved_model": SavedModelPredictor, "tflite": TFLitePredictor, "onnx": OnnxPredictor}
    return cls[detect_format(path)](path, num_threads)


def predict_batched(predictor: Predictor, pixels: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Runs `predictor` over `pixels` in batches; returns the stacked probabilities."""
    outputs = [predictor.predict(pixels[start : start + batch_size])
               for start in range(0, len(pixels), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0, predictor.num_classes), np.float32)
