"""Options laid over each other: a shipped recipe, then each ``--config`` YAML file (or a Python dict of options),
then the flags; and reading a flag's value before parsing."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml
from transformers import HfArgumentParser

CONFIG_HELP = "A YAML file of any of these options; flags override it. Repeat it to layer files, later ones winning."


def fail(parser: HfArgumentParser, message: str) -> None:
    """Exit with ``message`` and a pointer to ``--help``: the usage of ``hf-genrec train`` alone is some 170 lines,
    which would push the one line that says what was wrong off the screen."""
    parser.exit(2, f"{parser.prog}: error: {message}\nRun `{parser.prog} --help` for every option.\n")


def add_config_option(parser: HfArgumentParser) -> None:
    """Add ``--config`` (taken out of argv by `pop_config_files` before parsing; listed here for ``--help``)."""
    parser.add_argument("--config", default=None, action="append", help=CONFIG_HELP)


def pop_config_files(parser: HfArgumentParser, argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Take every ``--config FILE`` out of ``argv``: returns the rest of argv and the files, in order."""
    argv, files = list(argv), []
    while "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
            fail(parser, "--config needs a path to a YAML file.")
        files.append(argv[i + 1])
        del argv[i : i + 2]
    return argv, files


def read_layer(parser: HfArgumentParser, path: str) -> dict:
    """The options a YAML file sets; an option ``parser`` does not have is an error naming it (and what it may
    have meant)."""
    if not Path(path).is_file():
        fail(parser, f"--config {path}: no such file.")
    with open(path, encoding="utf-8") as f:
        layer = yaml.safe_load(f) or {}
    if not isinstance(layer, dict):
        fail(parser, f"{path} must hold a mapping of option names to values.")
    return check_layer(parser, layer, path)


def check_layer(parser: HfArgumentParser, layer: Mapping, source: str) -> dict:
    """``layer`` as a dict; an option ``parser`` does not have is an error naming it, where it came from
    (``source``) and the closest option there is."""
    known = {action.dest for action in parser._actions}
    unknown = sorted(set(layer) - known)
    if unknown:
        fail(parser, f"{source} has unknown options: {', '.join(_with_suggestion(name, known) for name in unknown)}.")
    return dict(layer)


def _with_suggestion(name: str, known: set[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"{prefix}{name} (did you mean {prefix}{close[0]}?)" if close else f"{prefix}{name}"


def check_flags(parser: HfArgumentParser, argv: Sequence[str]) -> None:
    """Raise a parser error naming every ``--flag`` in ``argv`` that ``parser`` does not have, with the closest
    one it does (Transformers' parser says only that some arguments were not used)."""
    known = {option.lstrip("-") for option in parser._option_string_actions if option.startswith("--")}
    unknown = [a.split("=", 1)[0][2:] for a in argv if a.startswith("--") and a.split("=", 1)[0][2:] not in known]
    if unknown:
        fail(parser, f"unknown options: {', '.join(_with_suggestion(name, known, '--') for name in unknown)}.")


def apply_layers(parser: HfArgumentParser, layers: Sequence[dict]) -> dict:
    """Set the options of ``layers`` (each as `read_layer` returns a file's) as ``parser``'s defaults, later layers
    over earlier ones (flags still win); returns the merged options."""
    defaults: dict = {}
    for layer in layers:
        defaults.update(layer)
    if defaults:
        parser.set_defaults(**defaults)
    return defaults


def with_default_output(argv: Sequence[str], defaults: dict, output_dir: str) -> list[str]:
    """``argv`` with ``--output_dir output_dir`` added when neither a flag nor a file (``defaults``) names one."""
    argv = list(argv)
    if option_value(argv, "output_dir") is None and "output_dir" not in defaults:
        argv += ["--output_dir", output_dir]
    return argv


def option_value(argv: Sequence[str], name: str) -> str | None:
    """The value ``argv`` gives option ``name`` (``--name value``, ``--name=value``, or with dashes for
    underscores), the last one when given twice; `None` when it is not given."""
    value = None
    flags = {f"--{name}", f"--{name.replace('_', '-')}"}
    for i, token in enumerate(argv):
        if token in flags and i + 1 < len(argv):
            value = argv[i + 1]
        elif "=" in token and token.split("=", 1)[0] in flags:
            value = token.split("=", 1)[1]
    return value
