"""`python -m tfrecord_tools <command> [flags]`: convert images to TFRecords, or verify them.

Commands: imagenet, folder, fashion-mnist, verify. `python -m tfrecord_tools <command> --help`
describes each flag. Bad arguments print one message and exit with code 2, writing nothing.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
VERBOSE_ENV = "TFRECORD_TOOLS_VERBOSE"


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _full_decode(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--full_decode", action="store_true",
                        help="fully decode every image while converting (slower); by default "
                             "RGB JPEGs are checked by header and end-of-image marker, which "
                             "catches truncated files, and everything else is decoded")


def _common(parser: argparse.ArgumentParser, train_shards: int, validation_shards: int) -> None:
    parser.add_argument("--output_directory", required=True,
                        help="where the shards, labels.txt and conversion_report.json go "
                             "(created; a re-run into it resumes)")
    parser.add_argument("--train_shards", type=_positive, default=train_shards,
                        help=f"number of train-NNNNN-of-NNNNN shards (default {train_shards})")
    parser.add_argument("--validation_shards", type=_positive, default=validation_shards,
                        help="number of validation-NNNNN-of-NNNNN shards "
                             f"(default {validation_shards})")
    parser.add_argument("--num_workers", type=_positive, default=None,
                        help="worker processes that check and encode images (default: one per "
                             "CPU core; 1 converts in this process)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the shuffle before sharding: same seed, same files "
                             "(default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tfrecord_tools", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    imagenet = commands.add_parser(
        "imagenet", help="ImageNet (synset folders) in the TF-slim / tensorflow-tpu layout",
        description="ImageNet -> TFRecords; labels 1..N in --labels_file order.")
    imagenet.add_argument("--train_directory",
                          help="folder of synset sub-folders (n01440764/*.JPEG, ...)")
    imagenet.add_argument("--validation_directory",
                          help="synset sub-folders, or a flat folder with --validation_labels_file")
    imagenet.add_argument("--labels_file", required=True,
                          help="one synset per line; line i gets label i (1-based)")
    imagenet.add_argument("--imagenet_metadata_file", required=True,
                          help="'synset<TAB>human readable text' per line (image/class/text)")
    imagenet.add_argument("--bounding_box_file",
                          help="CSV 'file.JPEG,xmin,ymin,xmax,ymax' (TF-slim "
                               "process_bounding_boxes.py output); optional")
    imagenet.add_argument("--validation_labels_file",
                          help="for a flat validation folder: one synset per line, for the "
                               "images in sorted file-name order")
    _common(imagenet, 1024, 128)
    _full_decode(imagenet)

    folder = commands.add_parser(
        "folder", help="any labelled images: one class per sub-folder",
        description="Class sub-folders (sorted; label = position + 1) -> TFRecords and "
                    "labels.txt (line i names label i + 1).")
    folder.add_argument("--input_directory", required=True,
                        help="folder with one sub-folder of images per class")
    split = folder.add_mutually_exclusive_group()
    split.add_argument("--validation_directory",
                       help="validation images in class sub-folders named as in "
                            "--input_directory")
    split.add_argument("--validation_fraction", type=float, default=0.1,
                       help="fraction of each class held out for validation when there is no "
                            "--validation_directory (default 0.1; 0: none)")
    _common(folder, 4, 1)
    _full_decode(folder)

    fashion = commands.add_parser(
        "fashion-mnist", help="Fashion-MNIST from the Debian package dataset-fashion-mnist",
        description="Fashion-MNIST -> 60,000 train and 10,000 validation RGB JPEG records.")
    fashion.add_argument("--source_directory", default=None,
                         help="folder of the four *-ubyte.gz files (default "
                              "/usr/share/datasets/fashion-mnist)")
    fashion.add_argument("--train_limit", type=_positive, default=None,
                         help="convert only the first N train images (quick runs)")
    fashion.add_argument("--validation_limit", type=_positive, default=None,
                         help="convert only the first N validation images (quick runs)")
    _common(fashion, 4, 1)

    verify = commands.add_parser(
        "verify", help="decode every record; counts, class histogram, bad records",
        description="Reads and decodes every record of DIR; exits with 1 naming the shard and "
                    "record index of anything corrupt.")
    verify.add_argument("directory", metavar="DIR", help="folder with the TFRecord shards")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def _summary(report: dict, output_directory: str) -> str:
    written = ", ".join(f"{n:,} {split}" for split, n in report["written"].items())
    rate = report.get("images_per_sec")
    lines = [f"Wrote {written} records to {output_directory} in {report['seconds']:.1f} s"
             + (f" ({rate:,.0f} images/s)" if rate else "")
             + (f"; re-encoded {report['reencoded']:,} to RGB JPEG" if report["reencoded"] else "")]
    skipped = report["skipped"]
    if skipped:
        lines.append(f"Skipped {len(skipped)} files (listed in "
                     f"{os.path.join(output_directory, 'conversion_report.json')}):")
        lines += [f"  {entry['path']}: {entry['reason']}" for entry in skipped[:20]]
        if len(skipped) > 20:
            lines.append(f"  ... and {len(skipped) - 20} more")
    return "\n".join(lines)


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import tfrecord_tools as tools

    try:
        if args.command == "verify":
            report = tools.verify(args.directory, quiet=args.quiet)
            print(json.dumps(report, indent=2) if args.json else tools.format_report(report))
            return 0 if report["ok"] else 1
        common = {"train_shards": args.train_shards, "validation_shards": args.validation_shards,
                  "num_workers": args.num_workers, "seed": args.seed, "quiet": args.quiet}
        if args.command == "imagenet":
            report = tools.convert_imagenet(
                args.train_directory, args.validation_directory, args.output_directory,
                args.labels_file, args.imagenet_metadata_file, args.bounding_box_file,
                args.validation_labels_file, full_decode=args.full_decode, **common)
        elif args.command == "folder":
            report = tools.convert_folder(
                args.input_directory, args.output_directory, args.validation_directory,
                args.validation_fraction, full_decode=args.full_decode, **common)
        else:
            report = tools.convert_fashion_mnist(
                args.output_directory, args.source_directory, train_limit=args.train_limit,
                validation_limit=args.validation_limit, **common)
    except tools.UsageError as error:
        parser.exit(2, f"{parser.prog} {args.command}: error: {error}\n")
    except KeyboardInterrupt:
        print("\nInterrupted: re-run the same command to resume (complete shards are kept).",
              file=sys.stderr)
        return 130
    print(_summary(report, args.output_directory))
    return 0


def _failure(error: Exception) -> tuple[str, int] | None:
    """(one line, exit status) for an anticipated failure, None for an unexpected one."""
    if isinstance(error, OSError) and error.errno is not None:
        where = f"{error.filename}: " if error.filename else ""
        if error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            return (f"{where}disk full ({error.strerror}): free space and re-run the same "
                    "command to resume (complete shards are kept)", 1)
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"{where}{error.strerror}: choose a directory you can write to", 2
        if isinstance(error, FileNotFoundError):
            return f"{where}no such file or directory: check the path", 2
    if isinstance(error, (RuntimeError, MemoryError)) and str(error):
        return str(error), 1
    return None


def main(argv: list[str] | None = None) -> int:
    """The CLI inside its error boundary: anticipated failures print one line and exit 2 (bad
    input) or 1 (run time); --verbose or TFRECORD_TOOLS_VERBOSE=1 adds the traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv or os.environ.get(VERBOSE_ENV, "") not in ("", "0")
    verbose = verbose or os.environ.get("EFFICIENTNET_VERBOSE", "") not in ("", "0")
    argv = [arg for arg in argv if arg != "--verbose"]
    try:
        return _main(argv)
    except Exception as error:
        failure = _failure(error)
        if failure is None:
            raise
        if verbose:
            traceback.print_exc()
        message, code = failure
        print(f"python -m tfrecord_tools: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
