"""EfficientNet training toolkit on TensorFlow 2 / Keras 3."""

import os as _os
import sys as _sys

# TensorFlow's oneDNN CPU kernels. TensorFlow turns them on by itself only on CPUs with AVX-512 /
# AMX-class features; on the AVX-only 2-core machines this project is measured on they run an
# efficientnet-b0 training step at 224 px, batch 32, in half the time (convolution and batch-norm
# backward; benchmarks/train_speed.py), and match the default kernels at 48 px. TensorFlow reads
# the variable once, when it is imported, so this takes effect when the package is imported first
# (every `python -m efficientnet...` command); TF_ENABLE_ONEDNN_OPTS=0 keeps the default kernels.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"

# Start-up lines TensorFlow 2.21 writes through absl before TF_CPP_MIN_LOG_LEVEL applies (twice,
# once per library that logs): the oneDNN notice and absl's preamble to it.
_STARTUP_NOTICES = ("oneDNN custom operations are on",
                    "WARNING: All log messages before absl::InitializeLog() is called")


def without_startup_notices(text: str) -> str:
    """`text` without the lines of TensorFlow's start-up notices (_STARTUP_NOTICES)."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not any(notice in line for notice in _STARTUP_NOTICES))


def quiet_tensorflow_logs() -> None:
    """For command lines: TF_CPP_MIN_LOG_LEVEL=2 unless the user set it, and, at that level,
    TensorFlow imported with its start-up notices dropped from stderr (everything else it prints
    passes through), so that an error is the one line the user reads."""
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in _sys.modules or _os.environ["TF_CPP_MIN_LOG_LEVEL"] in ("", "0"):
        return
    import tempfile

    _sys.stderr.flush()
    saved = _os.dup(2)
    with tempfile.TemporaryFile() as capture:
        _os.dup2(capture.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            _os.dup2(saved, 2)
            _os.close(saved)
            capture.seek(0)
            _sys.stderr.write(without_startup_notices(capture.read().decode(errors="replace")))
            _sys.stderr.flush()
