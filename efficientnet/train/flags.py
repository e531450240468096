"""Command-line flags of `python -m efficientnet.main` -> an `Experiment`.

One flag per field of the experiment tree (`efficientnet.config.schema`), generated from it: the
flag names are the field names (tensorflow/tpu's: --train_batch_size, --iterations_per_loop, ...),
the help text is the field's, and the default shown is the default experiment's value. Every flag
defaults to "not given": `--recipe` (default b0-imagenet-rmsprop) supplies the values and only
flags actually passed override them.
"""

from __future__ import annotations

from absl import flags

from efficientnet.config import experiments, run_file
from efficientnet.config.schema import FIELDS, ConfigError, Experiment, field_type

RECIPE_HELP = ("Named experiment supplying every default (flags override it): "
               + ", ".join(experiments.experiment_names()) + f". [{experiments.DEFAULT}]")


def _shown(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def flag_help(name: str, default_experiment: Experiment | None = None) -> str:
    """The help of flag `name`: the field's help and the default experiment's value."""
    default = (default_experiment or experiments.get_experiment()).flat()[name]
    text = FIELDS[name].metadata["help"]
    shown = _shown(default)
    return f"{text} [{shown}]" if shown else text


def define_flags(flag_values: flags.FlagValues) -> None:
    flags.DEFINE_string("recipe", None, RECIPE_HELP, flag_values=flag_values)
    default = experiments.get_experiment()
    for name, field in FIELDS.items():
        help_text = flag_help(name, default)
        check = field.metadata["check"]
        kind = field_type(name)
        if check.choices is not None:
            choices = [c for c in check.choices if c is not None]
            if None in check.choices:  # also accepted: "none"
                flags.DEFINE_string(name, None, help_text, flag_values=flag_values)
            else:
                flags.DEFINE_enum(name, None, choices, help_text, flag_values=flag_values)
        elif kind is bool:
            flags.DEFINE_boolean(name, None, help_text, flag_values=flag_values)
        elif kind is int:
            flags.DEFINE_integer(name, None, help_text, flag_values=flag_values)
        elif kind is float:
            flags.DEFINE_float(name, None, help_text, flag_values=flag_values)
        elif kind is tuple:
            flags.DEFINE_list(name, None, help_text, flag_values=flag_values)
        else:
            flags.DEFINE_string(name, None, help_text, flag_values=flag_values)


def new_flag_values() -> flags.FlagValues:
    flag_values = flags.FlagValues()
    define_flags(flag_values)
    return flag_values


def help_text() -> str:
    return ("usage: python -m efficientnet.main [--flag=value ...]\n\n"
            "Trains / evaluates EfficientNets (tensorflow/tpu flag names).\n\n"
            + new_flag_values().get_help())


def given_flags(argv: list[str]) -> tuple[str | None, dict]:
    """(--recipe or None, {flag name: value} of the flags actually passed) of `argv`."""
    flag_values = new_flag_values()
    try:
        rest = flag_values(["efficientnet.main", *argv], known_only=False)
    except flags.Error as error:
        raise ConfigError(str(error)) from None
    if len(rest) > 1:
        raise ConfigError(
            f"Unexpected arguments: {' '.join(rest[1:])} (flags look like --name=value)")
    given = {name: flag_values[name].value for name in FIELDS if flag_values[name].present}
    for name, value in given.items():  # --augment_name=none: an optional choice left unset
        choices = FIELDS[name].metadata["check"].choices
        if choices and None in choices and str(value).lower() in ("", "none"):
            given[name] = None
    if "restore_exclude" in given:
        given["restore_exclude"] = tuple(given["restore_exclude"] or ())
    recipe = flag_values["recipe"].value if flag_values["recipe"].present else None
    return recipe, given


def config_from_flags(argv: list[str]) -> Experiment:
    """Parses `argv` (without the program name) into a validated Experiment. --mode=eval takes
    the model settings of the run in --model_dir (its config.json) unless flags give them."""
    recipe, given = given_flags(argv)
    experiment = experiments.get_experiment(recipe or experiments.DEFAULT, **given)
    if experiment.train.mode == "eval":
        experiment = experiment.override(
            **run_file.eval_overrides(experiment.train.model_dir, given))
    return experiment.validate()
