"""Image datasets -> TFRecords in the TF-slim / tensorflow-tpu layout, and a verifier.

    python -m tfrecord_tools folder --input_directory D --output_directory O
    python -m tfrecord_tools imagenet --train_directory D --validation_directory V ...
    python -m tfrecord_tools fashion-mnist --output_directory O
    python -m tfrecord_tools verify O

The same functions are importable: `convert_folder`, `convert_imagenet`, `convert_fashion_mnist`,
`verify`. Importing this package does not import TensorFlow (worker processes stay light).
"""

from tfrecord_tools.convert import convert_fashion_mnist, convert_folder, convert_imagenet
from tfrecord_tools.verify import format_report, verify
from tfrecord_tools.writer import REPORT_FILE, Item, UsageError, write_dataset

__all__ = [
    "REPORT_FILE",
    "Item",
    "UsageError",
    "convert_fashion_mnist",
    "convert_folder",
    "convert_imagenet",
    "format_report",
    "verify",
    "write_dataset",
]
