"""The converters: a folder of class sub-folders, ImageNet (TF-slim layout), Fashion-MNIST.

Each one turns its source into `Item`s (label 1..C, class folders / synsets in sorted or
labels-file order), checks everything it can before writing, and hands them to
`writer.write_dataset`. Labels are 1-based as in the TF-slim ImageNet records: line i of
`labels.txt` names label i + 1.
"""

from __future__ import annotations

import gzip
import os
import random

import numpy as np

from tfrecord_tools.writer import Item, UsageError, write_dataset

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "validation": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _require_directory(path: str | None, flag: str) -> str:
    if not path:
        raise UsageError(f"{flag} is required")
    if not os.path.isdir(path):
        raise UsageError(f"{flag} {path} does not exist or is not a directory")
    return path


def _require_file(path: str | None, flag: str) -> str:
    if not path:
        raise UsageError(f"{flag} is required")
    if not os.path.isfile(path):
        raise UsageError(f"{flag} {path} does not exist or is not a file")
    return path


def _files_under(directory: str) -> list[str]:
    """Every non-hidden, non-directory entry below `directory`, sorted (unreadable ones too:
    they are reported, not silently dropped)."""
    paths = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        paths += [os.path.join(root, name) for name in sorted(files) if not name.startswith(".")]
    return paths


def _class_folders(directory: str, flag: str) -> list[str]:
    names = sorted(entry.name for entry in os.scandir(directory)
                   if entry.is_dir() and not entry.name.startswith("."))
    if not names:
        raise UsageError(f"{flag} {directory} has no class sub-folders (one folder per class)")
    for name in names:
        if any(ord(c) < 32 or ord(c) == 127 for c in name):
            # labels.txt has one class per line: a newline in a name would shift every label.
            raise UsageError(f"{flag} {directory}: class folder {name!r} has a control character "
                             "(a newline?) in its name; rename the folder")
    return names


def _folder_items(directory: str, classes: list[str], flag: str, required: bool) -> list[Item]:
    items = []
    for label, name in enumerate(classes, start=1):
        folder = os.path.join(directory, name)
        if not os.path.isdir(folder):
            if required:
                raise UsageError(f"{flag} {directory} has no folder for class {name!r}")
            continue
        paths = _files_under(folder)
        if not paths and required:
            raise UsageError(f"Class folder {folder} is empty: remove it or add images")
        items += [Item(label=label, filename=os.path.relpath(p, directory), path=p,
                       synset=name, text=name) for p in paths]
    return items


def _split_fraction(items: list[Item], fraction: float, seed: int) -> tuple[list, list]:
    """Per-class random split: round(fraction * n) of each class go to validation."""
    train, validation = [], []
    by_label: dict[int, list[Item]] = {}
    for item in items:
        by_label.setdefault(item.label, []).append(item)
    for label, group in sorted(by_label.items()):
        group = list(group)
        random.Random(f"{seed}:validation_split:{label}").shuffle(group)
        count = int(round(fraction * len(group)))
        validation += sorted(group[:count], key=lambda i: i.filename)
        train += sorted(group[count:], key=lambda i: i.filename)
    return train, validation


def convert_folder(input_directory: str, output_directory: str,
                   validation_directory: str | None = None, validation_fraction: float = 0.1,
                   train_shards: int = 4, validation_shards: int = 1,
                   num_workers: int | None = None, seed: int = 0, quiet: bool = False,
                   full_decode: bool = False) -> dict:
    """Class sub-folders of `input_directory` (sorted; label = position + 1) -> TFRecords.

    Validation images come from `validation_directory` (same class folder names) when given,
    else from a per-class random `validation_fraction` of the input (0: no validation split).
    """
    _require_directory(input_directory, "--input_directory")
    if output_directory is None:
        raise UsageError("--output_directory is required")
    classes = _class_folders(input_directory, "--input_directory")
    items = _folder_items(input_directory, classes, "--input_directory", required=True)
    if validation_directory:
        _require_directory(validation_directory, "--validation_directory")
        unknown = sorted(set(_class_folders(validation_directory, "--validation_directory"))
                         - set(classes))
        if unknown:
            raise UsageError(f"--validation_directory {validation_directory} has class folders "
                             f"that --input_directory lacks: {', '.join(unknown)}")
        train = items
        validation = _folder_items(validation_directory, classes, "--validation_directory",
                                   required=False)
        if not validation:
            raise UsageError(f"--validation_directory {validation_directory} has no images")
    else:
        if not 0.0 <= validation_fraction < 1.0:
            raise UsageError(f"--validation_fraction must be in [0, 1), got {validation_fraction}")
        train, validation = _split_fraction(items, validation_fraction, seed)
    return write_dataset(output_directory, {"train": train, "validation": validation},
                         {"train": train_shards, "validation": validation_shards},
                         list(classes), num_workers, seed, quiet, full_decode)


def read_imagenet_metadata(path: str) -> dict[str, str]:
    """`synset<TAB>human readable text` lines -> {synset: text}."""
    metadata = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2:
                raise UsageError(f"--imagenet_metadata_file {path} line {number}: expected "
                                 f"'synset<TAB>text', got {line.strip()!r}")
            metadata[parts[0].strip()] = parts[1].strip()
    return metadata


def read_bounding_boxes(path: str) -> dict[str, list[tuple[float, float, float, float]]]:
    """`filename,xmin,ymin,xmax,ymax` CSV lines (TF-slim process_bounding_boxes.py) -> boxes."""
    boxes: dict[str, list] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.strip().split(",")
            try:
                xmin, ymin, xmax, ymax = (min(max(float(v), 0.0), 1.0) for v in parts[1:5])
            except ValueError:
                raise UsageError(f"--bounding_box_file {path} line {number}: expected "
                                 f"'filename,xmin,ymin,xmax,ymax', got {line.strip()!r}") from None
            if len(parts) != 5:
                raise UsageError(f"--bounding_box_file {path} line {number}: expected 5 fields")
            if xmin < xmax and ymin < ymax:
                boxes.setdefault(os.path.basename(parts[0]), []).append((xmin, ymin, xmax, ymax))
    return boxes


def convert_imagenet(train_directory: str | None, validation_directory: str | None,
                     output_directory: str, labels_file: str, imagenet_metadata_file: str,
                     bounding_box_file: str | None = None,
                     validation_labels_file: str | None = None, train_shards: int = 1024,
                     validation_shards: int = 128, num_workers: int | None = None,
                     seed: int = 0, quiet: bool = False, full_decode: bool = False) -> dict:
    """ImageNet in the TF-slim / tensorflow-tpu layout; labels 1..N in `labels_file` order.

    Train images live in synset sub-folders. Validation images live in synset sub-folders or in
    one flat folder, labelled by `validation_labels_file` (one synset per line, for the images in
    sorted file-name order, like TF-slim's imagenet_2012_validation_synset_labels.txt).
    """
    if not train_directory and not validation_directory:
        raise UsageError("give --train_directory and/or --validation_directory")
    if output_directory is None:
        raise UsageError("--output_directory is required")
    _require_file(labels_file, "--labels_file")
    _require_file(imagenet_metadata_file, "--imagenet_metadata_file")
    with open(labels_file, encoding="utf-8") as f:
        synsets = [line.strip() for line in f if line.strip()]
    if not synsets:
        raise UsageError(f"--labels_file {labels_file} lists no synsets")
    if len(set(synsets)) != len(synsets):
        raise UsageError(f"--labels_file {labels_file} lists a synset twice")
    metadata = read_imagenet_metadata(imagenet_metadata_file)
    missing = [s for s in synsets if s not in metadata]
    if missing:
        raise UsageError(f"--imagenet_metadata_file {imagenet_metadata_file} has no text for "
                         f"{len(missing)} synsets, e.g. {missing[0]}")
    boxes = {}
    if bounding_box_file:
        boxes = read_bounding_boxes(_require_file(bounding_box_file, "--bounding_box_file"))
    label_of = {synset: label for label, synset in enumerate(synsets, start=1)}

    def item(path, synset, root):
        name = os.path.basename(path)
        return Item(label=label_of[synset], filename=os.path.relpath(path, root), path=path,
                    synset=synset, text=metadata[synset], bboxes=tuple(boxes.get(name, ())))

    train = []
    if train_directory:
        _require_directory(train_directory, "--train_directory")
        for synset in synsets:
            folder = os.path.join(train_directory, synset)
            if not os.path.isdir(folder):
                raise UsageError(f"--train_directory {train_directory} has no folder {synset} "
                                 f"(listed in --labels_file)")
            paths = _files_under(folder)
            if not paths:
                raise UsageError(f"Class folder {folder} is empty")
            train += [item(p, synset, train_directory) for p in paths]

    validation = []
    if validation_directory:
        _require_directory(validation_directory, "--validation_directory")
        if validation_labels_file:
            _require_file(validation_labels_file, "--validation_labels_file")
            with open(validation_labels_file, encoding="utf-8") as f:
                truth = [line.strip() for line in f if line.strip()]
            paths = [p for p in _files_under(validation_directory)
                     if os.path.dirname(p) == validation_directory.rstrip(os.sep)]
            if len(truth) != len(paths):
                raise UsageError(
                    f"--validation_labels_file {validation_labels_file} has {len(truth)} labels "
                    f"but --validation_directory {validation_directory} has {len(paths)} files")
            unknown = sorted(set(truth) - set(label_of))
            if unknown:
                raise UsageError(f"--validation_labels_file {validation_labels_file} names "
                                 f"synsets not in --labels_file, e.g. {unknown[0]}")
            validation = [item(p, s, validation_directory) for p, s in zip(paths, truth)]
        else:
            folders = set(_class_folders(validation_directory, "--validation_directory"))
            unknown = sorted(folders - set(label_of))
            if unknown:
                raise UsageError(f"--validation_directory {validation_directory} has folders "
                                 f"not in --labels_file, e.g. {unknown[0]} (a flat folder needs "
                                 "--validation_labels_file)")
            for synset in synsets:
                if synset in folders:
                    validation += [item(p, synset, validation_directory)
                                   for p in _files_under(os.path.join(validation_directory,
                                                                      synset))]
        if not validation:
            raise UsageError(f"--validation_directory {validation_directory} has no images")
    class_lines = [f"{synset}\t{metadata[synset]}" for synset in synsets]
    return write_dataset(output_directory, {"train": train, "validation": validation},
                         {"train": train_shards, "validation": validation_shards},
                         class_lines, num_workers, seed, quiet, full_decode)


def _read_idx(path: str, magic: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        raise UsageError(f"Cannot read {path}: {error}") from None
    header = np.frombuffer(data, ">u4", count=1)
    if len(data) < 8 or int(header[0]) != magic:
        raise UsageError(f"{path} is not an IDX file (magic {magic} expected)")
    dims = magic & 0xFF
    shape = tuple(int(v) for v in np.frombuffer(data, ">u4", count=dims, offset=4))
    array = np.frombuffer(data, np.uint8, offset=4 + 4 * dims)
    if array.size != int(np.prod(shape)):
        raise UsageError(f"{path} is truncated ({array.size} of {int(np.prod(shape))} bytes)")
    return array.reshape(shape)


def read_fashion_mnist(source_directory: str | None = None) -> dict[str, tuple]:
    """{split: (uint8 images [N, 28, 28], labels 0..9 [N])} from the IDX .gz files."""
    directory = source_directory or FASHION_MNIST_DIR
    paths = {split: tuple(os.path.join(directory, name) for name in names)
             for split, names in FASHION_MNIST_FILES.items()}
    missing = [p for pair in paths.values() for p in pair if not os.path.isfile(p)]
    if missing:
        raise UsageError(
            f"Fashion-MNIST file {missing[0]} not found. Install the Debian package with "
            "`sudo apt-get install dataset-fashion-mnist` (files go to "
            f"{FASHION_MNIST_DIR}), or pass --source_directory with the four *-ubyte.gz files")
    data = {}
    for split, (images_path, labels_path) in paths.items():
        images = _read_idx(images_path, 2051)
        labels = _read_idx(labels_path, 2049)
        if len(images) != len(labels):
            raise UsageError(f"{images_path} has {len(images)} images but {labels_path} has "
                             f"{len(labels)} labels")
        data[split] = (images, labels)
    return data


def convert_fashion_mnist(output_directory: str, source_directory: str | None = None,
                          train_shards: int = 4, validation_shards: int = 1,
                          num_workers: int | None = None, seed: int = 0,
                          train_limit: int | None = None, validation_limit: int | None = None,
                          quiet: bool = False) -> dict:
    """Fashion-MNIST (60,000 train, 10,000 validation 28x28 grey images) -> RGB JPEG records.

    `train_limit` / `validation_limit` keep the first N images of each split (quick tests).
    The JPEGs are quality 95 with identical R, G and B, so no chroma is lost.
    """
    if output_directory is None:
        raise UsageError("--output_directory is required")
    for flag, value in (("--train_limit", train_limit), ("--validation_limit", validation_limit)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    data = read_fashion_mnist(source_directory)
    limits = {"train": train_limit, "validation": validation_limit}
    splits = {}
    for split, (images, labels) in data.items():
        count = len(images) if limits[split] is None else min(limits[split], len(images))
        splits[split] = [
            Item(label=int(labels[i]) + 1, filename=f"{split}_{i:05d}.jpeg",
                 pixels=images[i].tobytes(), shape=images[i].shape,
                 synset=_slug(FASHION_MNIST_CLASSES[labels[i]]),
                 text=FASHION_MNIST_CLASSES[labels[i]])
            for i in range(count)]
    return write_dataset(output_directory, splits,
                         {"train": train_shards, "validation": validation_shards},
                         list(FASHION_MNIST_CLASSES), num_workers, seed, quiet)


def _slug(name: str) -> str:
    return name.lower().replace("/", "_").replace(" ", "_")
