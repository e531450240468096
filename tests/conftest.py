"""Shared test set-up: quiet TensorFlow logs and a small, deterministic environment."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# Before any test module imports TensorFlow: the package's oneDNN default, as users get it.
import efficientnet  # noqa: E402,F401
