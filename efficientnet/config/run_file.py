"""`<model_dir>/config.json`: the experiment a run trained with, written and read only here.

Training writes it once the run's weights are known to be right (after a resume or restore
succeeded); evaluation (`--mode=eval`), export (`--export_dir`, `bash test.sh export`) and a later
resume read it back. Files written before the experiment tree (one flat dict of flag names) are
still read.

    python -m efficientnet.config.run_file export-flags MODEL_DIR   # efficientnet.export flags
    python -m efficientnet.config.run_file show MODEL_DIR           # the saved experiment
"""

from __future__ import annotations

import json
import os
import sys

from efficientnet.config.schema import FIELD_SECTION, ConfigError, Experiment

CONFIG_FILE = "config.json"
FORMAT_VERSION = 2

# What evaluating a trained model_dir takes from the run that trained it (unless flags say).
EVAL_INHERITED = ("model_name", "num_label_classes", "image_size", "eval_batch_size",
                  "num_eval_images", "dropout_rate", "drop_connect_rate")
# What a resume must agree on with the run in model_dir: the weights' shapes depend on them.
RESUME_MUST_MATCH = ("model_name", "num_label_classes", "image_size")


def path_of(model_dir: str) -> str:
    return os.path.join(model_dir, CONFIG_FILE)


def write(experiment: Experiment) -> str:
    """Writes <model_dir>/config.json atomically; returns its path."""
    model_dir = experiment.train.model_dir
    os.makedirs(model_dir, exist_ok=True)
    path = path_of(model_dir)
    document = {"format_version": FORMAT_VERSION, **experiment.to_dict()}
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    os.replace(path + ".tmp", path)
    return path


def read(model_dir: str | None) -> Experiment | None:
    """The experiment saved in `model_dir`, None when there is none; ConfigError naming the file
    when it cannot be read."""
    if not model_dir or not os.path.isfile(path_of(model_dir)):
        return None
    path = path_of(model_dir)
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        if "format_version" in document or "model" in document:
            return Experiment.from_dict(document)
        # The flat RunConfig dict of earlier releases: flag name -> value ("recipe": its name).
        return Experiment.from_flat(document, name=document.get("recipe") or Experiment.name,
                                    ignore_unknown=True)
    except (OSError, ValueError, TypeError) as error:  # JSONDecodeError, ConfigError: ValueErrors
        raise ConfigError(
            f"{path} is not the config.json of a training run ({type(error).__name__}: "
            f"{error}); restore it or move it away") from None


def eval_overrides(model_dir: str | None, given: dict) -> dict:
    """Field values of the run in `model_dir` that an evaluation reuses unless `given` (flags
    actually passed) sets them: the model, its head and size, the eval batch and data."""
    saved = read(model_dir)
    if saved is None:
        return {}
    flat = saved.flat()
    values = {k: flat[k] for k in EVAL_INHERITED if k not in given}
    if "data_dir" not in given and "use_synthetic_data" not in given:
        values["use_synthetic_data"] = bool(flat["use_synthetic_data"])
        if flat["data_dir"]:
            values["data_dir"] = flat["data_dir"]
    return values


def check_resume(experiment: Experiment) -> None:
    """Refuses (ConfigError) to train `experiment` in a model_dir whose saved run has another
    model, head or resolution: its checkpoints could not be restored, and nothing is written."""
    saved = read(experiment.train.model_dir)
    if saved is None:
        return
    new, old = experiment.flat(), saved.flat()
    for name in RESUME_MUST_MATCH:
        if new[name] != old[name]:
            raise ConfigError(
                f"--{name}={_shown(new[name])} contradicts {_shown(old[name])} of the run in "
                f"{path_of(experiment.train.model_dir)}; use another --model_dir")


def _shown(value) -> str:
    return "the model's default" if value is None else str(value)


def export_flags(experiment: Experiment, formats: str | None = "saved_model") -> list[str]:
    """`python -m efficientnet.export` flags that export this run as it evaluated: its model,
    classes, size and eval preprocessing (the bytes signature crops and resizes the same way)."""
    model, data, train = experiment.model, experiment.data, experiment.train
    args = [f"--model_name={model.model_name}", f"--num_label_classes={model.num_label_classes}"]
    if train.model_dir:
        args.append(f"--model_dir={train.model_dir}")
    if train.export_dir:
        args.append(f"--export_dir={train.export_dir}")
    if formats:
        args.append(f"--formats={formats}")
    if model.image_size:
        args.append(f"--image_size={model.image_size}")
    if data.crop_padding is not None:
        args.append(f"--crop_padding={data.crop_padding}")
    if data.resize_method:
        args.append(f"--resize_method={data.resize_method}")
    return args


def saved_export_flags(model_dir: str) -> list[str]:
    """Export flags of the run saved in `model_dir` (model settings only: no directories or
    formats, so a caller's own flags complete them); [] without a config.json."""
    saved = read(model_dir)
    if saved is None:
        return []
    saved = saved.override(model_dir=None, export_dir=None)
    return export_flags(saved, formats=None)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = ("usage: python -m efficientnet.config.run_file {export-flags|show} MODEL_DIR\n"
             "  export-flags: efficientnet.export flags of the saved run, one per line\n"
             "  show:         the saved experiment as JSON")
    if len(argv) != 2 or argv[0] not in ("export-flags", "show"):
        print(usage, file=sys.stderr)
        return 2
    command, model_dir = argv
    try:
        if command == "export-flags":
            for flag in saved_export_flags(model_dir):
                print(flag)
            return 0
        saved = read(model_dir)
        if saved is None:
            print(f"error: no {CONFIG_FILE} in {model_dir}", file=sys.stderr)
            return 2
        print(json.dumps(saved.to_dict(), indent=2))
        return 0
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


assert set(EVAL_INHERITED + RESUME_MUST_MATCH) <= set(FIELD_SECTION)

if __name__ == "__main__":
    sys.exit(main())
