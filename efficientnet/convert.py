"""`python -m efficientnet.convert`: a TF1 / automl / Keras / PyTorch checkpoint -> a checkpoint of
this project.

    python -m efficientnet.convert --model_name=efficientnet-b0 \
        --checkpoint=/ckpts/efficientnet-b0/model.ckpt --output_dir=/ckpts/b0-native
    python -m efficientnet.convert --model_name=efficientnet-lite0 \
        --checkpoint=efficientnet-lite0-57934424.pth --output_dir=/ckpts/lite0

PyTorch state dicts (`.pth`/`.pt`/`.bin`, zip or legacy serialization, or `.safetensors`) in
efficientnet_pytorch or timm naming are read without torch (docs/pretrained.md).

Writes `<output_dir>/ckpt-0` (usable as --restore_path or --model_dir for eval and export) and
`<output_dir>/restore_report.json`, after checking that a forward pass gives finite logits.
"""

from __future__ import annotations

import argparse
import os
import sys

from efficientnet import quiet_tensorflow_logs

quiet_tensorflow_logs()


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m efficientnet.convert",
        description="Convert a TF1 tensorflow/tpu, google/automl, Keras or PyTorch (timm, "
                    "efficientnet_pytorch) EfficientNet checkpoint into this project's "
                    "checkpoint layout.")
    parser.add_argument("--model_name", required=True,
                        help="Model of the zoo the checkpoint holds, e.g. efficientnet-b0.")
    parser.add_argument("--checkpoint", required=True,
                        help="Checkpoint prefix or directory (TF1/automl), .weights.h5 file, or "
                             "PyTorch .pth/.pt/.bin/.safetensors file.")
    parser.add_argument("--output_dir", required=True, help="Where ckpt-0 and the report go.")
    parser.add_argument("--num_classes", type=int, default=None,
                        help="Head size; default: the checkpoint's (1001 becomes 1000 by dropping "
                             "the background row; pass 1001 to keep it).")
    parser.add_argument("--restore_prefer_ema", default="true", choices=("true", "false"),
                        help="Use /ExponentialMovingAverage copies when present. [true]")
    parser.add_argument("--restore_exclude", default="",
                        help="Comma list of variable prefixes/regexes to leave at initial values.")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """The CLI inside efficientnet.cli's error boundary (bad input exits 2, --verbose)."""
    from efficientnet import cli

    return cli.run(_main, argv)


def _main(argv) -> int:
    args = parse_args(argv)
    from efficientnet import models
    from efficientnet.train.restore import RestoreError, convert

    try:
        models.get_spec(args.model_name)
        if os.path.isdir(args.output_dir) and any(
                name.startswith("ckpt-") for name in os.listdir(args.output_dir)):
            raise RestoreError(
                f"--output_dir {args.output_dir!r} already holds a checkpoint; choose an empty "
                "folder so nothing is overwritten")
        report = convert(
            args.model_name, args.checkpoint, args.output_dir, num_classes=args.num_classes,
            prefer_ema=args.restore_prefer_ema == "true",
            exclude=[p for p in args.restore_exclude.split(",") if p])
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote {report['output']} ({report['num_classes']} classes) and "
          f"{os.path.join(args.output_dir, 'restore_report.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
