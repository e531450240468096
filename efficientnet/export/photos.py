"""Real photographs with known ImageNet classes, from the scikit-image package (no download).

scikit-image ships its sample photos inside the wheel (`skimage/data/*.png`); three of them have
one ImageNet class a person would agree with, and a fourth is a cat (which of ImageNet's cat
breeds is a matter of taste). `write_records` turns them into a TFRecord folder
(`validation-*`: the three labelled photos; `train-*`: every colour photo, as int8 calibration
data), so `python -m efficientnet.export --data_dir` and `efficientnet.infer --data_dir` measure
ImageNet weights on real images.
"""

from __future__ import annotations

import importlib.util
import io
import os

from efficientnet.export.config import ExportError

IMAGENET_CLASSES_FILE = os.path.join(os.path.dirname(__file__), "imagenet_classes.txt")
# file -> 0-based ImageNet class (efficientnet/export/imagenet_classes.txt line).
LABELLED = {"coffee.png": 967, "motorcycle_left.png": 665, "camera.png": 872}  # espresso,
# moped, tripod (a photographer behind a camera on a tripod)
CAT_PHOTO, CAT_CLASSES = "chelsea.png", (281, 282, 285)  # tabby, tiger cat, Egyptian cat
CALIBRATION = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
               "motorcycle_right.png", "camera.png", "clock_motion.png", "hubble_deep_field.jpg",
               "retina.jpg")


def photo_dir() -> str:
    """skimage/data of the installed scikit-image; ExportError naming the extra if missing."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise ExportError("The sample photos come from scikit-image: pip install -e '.[weights]'")
    return os.path.join(os.path.dirname(spec.origin), "data")


def photo_path(name: str) -> str:
    """Full path of one sample photo."""
    return os.path.join(photo_dir(), name)


def write_records(directory: str, calibration_views: int = 4) -> str:
    """Writes `validation-00000-of-00001` (LABELLED, labels 1-based as the pipeline expects) and
    `train-00000-of-00001` (CALIBRATION photos, each as `calibration_views` crops); returns it."""
    import tensorflow as tf
    from PIL import Image

    from tfrecord_tools.example import image_example

    def record(image: Image.Image, label: int, name: str) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return image_example(buffer.getvalue(), image.height, image.width, label, filename=name,
                             image_format="PNG")

    os.makedirs(directory, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(directory, "validation-00000-of-00001")) as writer:
        for name, label in LABELLED.items():
            writer.write(record(Image.open(photo_path(name)).convert("RGB"), label + 1, name))
    with tf.io.TFRecordWriter(os.path.join(directory, "train-00000-of-00001")) as writer:
        for name in CALIBRATION:
            image = Image.open(photo_path(name)).convert("RGB")
            width, height = image.size
            for view in range(calibration_views):  # the whole photo, then shrinking crops
                keep = 1.0 - 0.15 * view
                box = (int(width * (1 - keep) / 2), int(height * (1 - keep) / 2),
                       int(width * (1 + keep) / 2), int(height * (1 + keep) / 2))
                crop = image.crop(box)
                if view % 2:
                    crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                writer.write(record(crop, 1, name))
    with open(os.path.join(directory, "labels.txt"), "w", encoding="utf-8") as handle:
        handle.write(open(IMAGENET_CLASSES_FILE, encoding="utf-8").read())
    return directory
