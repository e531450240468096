"""The input pipeline: TFRecords -> decoded, cropped, augmented, normalised batches.

    from efficientnet.data import DataConfig, build_dataset
    dataset = build_dataset("/data/train-*", True, 64, get_spec("efficientnet-b0"), DataConfig())

`preprocessing` holds the per-image ops (also used by the exporter's bytes signature), `augment`
AutoAugment / RandAugment / mixup / cutmix, `pipeline` the tf.data plumbing.
"""

from efficientnet.data.config import DataConfig
from efficientnet.data.pipeline import build_dataset, list_files, parse_record
from efficientnet.data.preprocessing import (
    normalize_images,
    preprocess_for_eval,
    preprocess_for_train,
)

__all__ = [
    "DataConfig",
    "build_dataset",
    "list_files",
    "normalize_images",
    "parse_record",
    "preprocess_for_eval",
    "preprocess_for_train",
]
