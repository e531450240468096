"""`DataConfig`: every choice the input pipeline makes, explicit and in one place."""

from __future__ import annotations

import dataclasses

AUGMENT_NAMES = (None, "autoaugment", "randaugment")
RESIZE_METHODS = ("bicubic", "bicubic_tf1", "bilinear")
DTYPES = ("float32", "float16", "bfloat16")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Input pipeline settings; the model-dependent ones (size, mean/std) come from the ModelSpec."""

    image_size: int | None = None  # None: spec.train_size when training, spec.eval_size for eval
    num_label_classes: int = 1000  # 1001 keeps TFRecord labels (1..1000) as they are; else label - 1
    augment_name: str | None = None  # None | 'autoaugment' | 'randaugment'
    randaug_num_layers: int = 2
    randaug_magnitude: int = 10
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    # 'bicubic' (TF2 tf.image.resize) | 'bicubic_tf1' (exact ResizeBicubic, half_pixel_centers=False,
    # for parity with TF1 checkpoints) | 'bilinear'
    resize_method: str = "bicubic"
    dtype: str = "float32"  # compute dtype of the images
    shuffle_buffer: int = 1024
    seed: int | None = None
    deterministic: bool = False
    use_synthetic_data: bool = False
    cache: bool = False
    # None: spec.crop_padding. Eval crops image_size / (image_size + crop_padding) of the short
    # side; small inputs such as 28 px Fashion-MNIST at 32 px want 0 (the whole image).
    crop_padding: int | None = None
    # Smallest random-crop area as a fraction of the image (the Inception crop's 0.08); small,
    # centred images such as Fashion-MNIST train better with a milder crop.
    min_crop_area: float = 0.08

    def __post_init__(self):
        augment = self.augment_name.lower() if isinstance(self.augment_name, str) else None
        if augment in ("", "none"):
            augment = None
        object.__setattr__(self, "augment_name", augment)
        if augment not in AUGMENT_NAMES:
            raise ValueError(f"augment_name {self.augment_name!r} is not one of "
                             "None, 'autoaugment', 'randaugment'")
        if self.resize_method not in RESIZE_METHODS:
            raise ValueError(f"resize_method {self.resize_method!r} is not one of "
                             f"{', '.join(RESIZE_METHODS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if self.num_label_classes < 1:
            raise ValueError(f"num_label_classes must be positive, got {self.num_label_classes}")
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise ValueError("mixup_alpha and cutmix_alpha must be >= 0")
        if not 0 <= self.randaug_magnitude <= 30:
            raise ValueError(f"randaug_magnitude must be in [0, 30], got {self.randaug_magnitude}")
        if self.randaug_num_layers < 0:
            raise ValueError(f"randaug_num_layers must be >= 0, got {self.randaug_num_layers}")
        if self.shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer must be >= 1, got {self.shuffle_buffer}")
        if not 0 < self.min_crop_area <= 1:
            raise ValueError(f"min_crop_area must be in (0, 1], got {self.min_crop_area}")
        if self.crop_padding is not None and self.crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {self.crop_padding}")

    @property
    def label_offset(self) -> int:
        """What is subtracted from the 1-based TFRecord label (0 for 1001-class models)."""
        return 0 if self.num_label_classes == 1001 else 1
