"""Class-name files: one name per line, line i naming class i (after the pipeline's label shift)."""

from __future__ import annotations

import os

from efficientnet.export.config import ExportError


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
