"""`verify DIR`: reads and decodes every record; counts per split, class histogram, what is broken.

A record is bad when its TFRecord frame is corrupt (CRC), it is not a tf.train.Example, it lacks
`image/encoded` or `image/class/label`, its image does not decode, `image/format` does not match
the bytes, or `image/height`/`image/width` disagree with the decoded image. Bad records are named
by shard and record index.
"""

from __future__ import annotations

import collections
import glob
import os
import re
import sys

from tfrecord_tools.writer import SPLITS, Progress, UsageError

_SHARD = re.compile(r"^(?P<split>[a-z]+)-(?P<index>\d{5})-of-(?P<count>\d{5})$")


def find_shards(directory: str) -> dict[str, list[str]]:
    """{split: sorted shard paths}; UsageError when the directory holds no shards."""
    if not os.path.isdir(directory):
        raise UsageError(f"{directory} does not exist or is not a directory")
    shards: dict[str, list[str]] = {}
    for path in sorted(glob.glob(os.path.join(directory, "*-*-of-*"))):
        match = _SHARD.match(os.path.basename(path))
        if match and match["split"] in SPLITS:
            shards.setdefault(match["split"], []).append(path)
    if not shards:
        raise UsageError(f"{directory} holds no train-NNNNN-of-NNNNN or validation-NNNNN-of-NNNNN "
                         "TFRecord shards")
    return shards


def _missing_shards(paths: list[str]) -> list[str]:
    names = {os.path.basename(p) for p in paths}
    counts = {int(_SHARD.match(n)["count"]) for n in names}
    split = _SHARD.match(next(iter(names)))["split"]
    expected = {f"{split}-{i:05d}-of-{count:05d}" for count in counts for i in range(count)}
    return sorted(expected - names)


def _record_check_fn():
    import tensorflow as tf

    features = {
        "image/encoded": tf.io.FixedLenFeature((), tf.string, default_value=""),
        "image/class/label": tf.io.FixedLenFeature((), tf.int64, default_value=-1),
        "image/format": tf.io.FixedLenFeature((), tf.string, default_value=""),
        "image/height": tf.io.FixedLenFeature((), tf.int64, default_value=-1),
        "image/width": tf.io.FixedLenFeature((), tf.int64, default_value=-1),
    }

    def check(index, serialized):
        parsed = tf.io.parse_single_example(serialized, features)
        encoded = parsed["image/encoded"]
        shape = tf.shape(tf.io.decode_image(encoded, channels=3, expand_animations=False),
                         out_type=tf.int64)
        image_format = tf.strings.upper(parsed["image/format"])
        is_jpeg = tf.io.is_jpeg(encoded)
        format_ok = tf.logical_or(tf.equal(image_format, ""),
                                  tf.equal(is_jpeg, tf.equal(image_format, "JPEG")))
        size_ok = tf.logical_or(
            tf.equal(parsed["image/height"], -1),
            tf.logical_and(tf.equal(parsed["image/height"], shape[0]),
                           tf.equal(parsed["image/width"], shape[1])))
        return {"index": index, "label": parsed["image/class/label"],
                "has_image": tf.strings.length(encoded) > 0, "format_ok": format_ok,
                "size_ok": size_ok}

    return check


def _count_frames(path: str) -> tuple[int, dict | None]:
    """(readable records, error) of a shard: a CRC or truncation error ends the readable part."""
    import tensorflow as tf

    count = 0
    try:
        for batch in tf.data.TFRecordDataset(path).batch(1024):
            count += int(batch.shape[0])
    except tf.errors.OpError as error:
        count = _count_readable(path)
        return count, {"shard": path, "record": count,
                       "reason": f"corrupt TFRecord data ({error.message.splitlines()[0]})"}
    return count, None


def _verify_shard(path: str, count: int, check_fn, progress) -> tuple[collections.Counter, list]:
    import tensorflow as tf

    errors = []
    # Pass 2: parse + decode in parallel; records whose decoding fails are dropped, so a gap in
    # the indices names them.
    dataset = (tf.data.TFRecordDataset(path).take(count).enumerate()
               .map(check_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
               .ignore_errors().batch(256))
    labels = collections.Counter()
    seen = set()
    for batch in dataset:
        batch = {k: v.numpy() for k, v in batch.items()}
        for i, index in enumerate(batch["index"]):
            index = int(index)
            seen.add(index)
            reason = None
            if not batch["has_image"][i]:
                reason = "no image/encoded feature"
            elif batch["label"][i] < 0:
                reason = "no image/class/label feature"
            elif not batch["format_ok"][i]:
                reason = "image/format does not match the encoded bytes"
            elif not batch["size_ok"][i]:
                reason = "image/height or image/width differ from the decoded image"
            if reason:
                errors.append({"shard": path, "record": index, "reason": reason})
            else:
                labels[int(batch["label"][i])] += 1
        progress.update(len(batch["index"]))
    for index in sorted(set(range(count)) - seen):
        errors.append({"shard": path, "record": index,
                       "reason": _why_unreadable(path, index)})
        progress.update(1)
    return labels, errors


def _count_readable(path: str) -> int:
    import tensorflow as tf

    count = 0
    try:
        for _ in tf.data.TFRecordDataset(path):
            count += 1
    except tf.errors.OpError:
        pass
    return count


def _why_unreadable(path: str, index: int) -> str:
    import tensorflow as tf

    record = next(iter(tf.data.TFRecordDataset(path).skip(index).take(1)))
    try:
        example = tf.train.Example.FromString(record.numpy())
    except Exception:  # protobuf DecodeError and friends
        return "not a tf.train.Example"
    feature = example.features.feature.get("image/encoded")
    if feature is None or not feature.bytes_list.value:
        return "no image/encoded feature"
    try:
        tf.io.decode_image(feature.bytes_list.value[0], channels=3, expand_animations=False)
    except tf.errors.OpError as error:
        return f"image/encoded does not decode ({error.message.splitlines()[0]})"
    return "record does not parse"


def verify(directory: str, quiet: bool = False) -> dict:
    """Decodes every record of every shard in `directory`.

    Returns {"ok": bool, "splits": {split: {"records", "shards", "classes": {label: n}}},
    "errors": [{"shard", "record", "reason"}]}.
    """
    shards = find_shards(directory)
    check_fn = _record_check_fn()
    report = {"ok": True, "splits": {}, "errors": []}
    stream = open(os.devnull, "w") if quiet else sys.stderr
    for split, paths in sorted(shards.items(), key=lambda kv: SPLITS.index(kv[0])):
        for name in _missing_shards(paths):
            report["errors"].append({"shard": os.path.join(directory, name), "record": None,
                                     "reason": "shard missing"})
        counted = [(path, *_count_frames(path)) for path in paths]
        progress = Progress(f"verifying {split}", sum(c for _, c, _ in counted), stream=stream)
        histogram = collections.Counter()
        for path, count, frame_error in counted:
            labels, errors = _verify_shard(path, count, check_fn, progress)
            histogram += labels
            report["errors"] += errors + ([frame_error] if frame_error else [])
        progress.finish()
        report["splits"][split] = {
            "records": sum(histogram.values()), "shards": len(paths),
            "classes": {int(k): v for k, v in sorted(histogram.items())}}
    report["ok"] = not report["errors"]
    return report


def format_report(report: dict) -> str:
    lines = []
    for split, info in report["splits"].items():
        classes = info["classes"]
        lines.append(f"{split}: {info['records']:,} records in {info['shards']} shards, "
                     f"{len(classes)} classes")
        if classes:
            counts = list(classes.values())
            lines.append(f"  per class: min {min(counts):,}, max {max(counts):,}, "
                         f"mean {sum(counts) / len(counts):,.1f}")
            shown = list(classes.items())
            text = ", ".join(f"{label}: {count}" for label, count in shown[:20])
            more = f", ... ({len(shown) - 20} more)" if len(shown) > 20 else ""
            lines.append(f"  histogram (label: records): {text}{more}")
    for error in report["errors"]:
        where = error["shard"] if error["record"] is None else \
            f"{error['shard']} record {error['record']}"
        lines.append(f"BAD {where}: {error['reason']}")
    lines.append("OK" if report["ok"] else f"FAILED: {len(report['errors'])} bad records")
    return "\n".join(lines)
