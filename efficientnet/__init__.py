"""EfficientNet training toolkit on TensorFlow 2 / Keras 3."""

import os as _os

# TensorFlow's oneDNN CPU kernels. TensorFlow turns them on by itself only on CPUs with AVX-512 /
# AMX-class features; on the AVX-only 2-core machines this project is measured on they run an
# efficientnet-b0 training step at 224 px, batch 32, in half the time (convolution and batch-norm
# backward; benchmarks/train_speed.py), and match the default kernels at 48 px. TensorFlow reads
# the variable once, when it is imported, so this takes effect when the package is imported first
# (every `python -m efficientnet...` command); TF_ENABLE_ONEDNN_OPTS=0 keeps the default kernels.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
