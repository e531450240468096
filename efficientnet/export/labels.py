"""Class-name files: one name per line, line i naming class i (after the pipeline's label shift)."""

from __future__ import annotations

import logging
import os

from efficientnet.export.config import LABELS_FILE, ExportError

log = logging.getLogger(__name__)


def read_labels(path: str, num_classes: int | None = None) -> list[str]:
    """Reads a labels file; checks it names exactly `num_classes` classes when given.

    Lines may be `name`, `index<TAB>name` or `synset<TAB>name` (what folder converters write); the
    last tab-separated field is the name. With 1001 classes a 1000-line file gets a leading
    `background` entry, since index 0 is the background class of those checkpoints.
    """
    if not os.path.isfile(path):
        raise ExportError(f"Labels file {path} does not exist.")
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n\r") for line in f]
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.split("\t")[-1].strip() for line in lines]
    if num_classes is not None:
        if len(names) == num_classes - 1 and num_classes == 1001:
            names = ["background", *names]
        if len(names) != num_classes:
            raise ExportError(
                f"Labels file {path} names {len(names)} classes but the model has {num_classes}; "
                "give one name per line, line i for class i."
            )
    return names


def write_labels(path: str, names: list[str]) -> None:
    """Writes one name per line (the format `read_labels` reads)."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{name}\n" for name in names)


def data_dir_labels(data_dir: str, num_classes: int) -> list[str] | None:
    """The class names in `data_dir`/labels.txt (what `tfrecord_tools` writes next to the
    shards), or None when there is no such file or it names another number of classes (said in
    the log: the export goes on without names)."""
    path = os.path.join(data_dir, LABELS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        names = read_labels(path, num_classes)
    except ExportError as error:
        log.warning("Not using %s for class names: %s", path, error)
        return None
    log.info("Class names from %s", path)
    return names
