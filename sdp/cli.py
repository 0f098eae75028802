"""Command-line and YAML names of `RoundConfig`, checked before argparse sees them.

argparse would accept a prefix (`--max_train_problem` silently set `max_train_problems`) and
HfArgumentParser ends an unknown flag in a traceback; here every `--flag` and every key of the
`--config` file must be a field exactly, and an unknown one is one line with the closest valid name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from sdp.fieldcheck import closest

PROG = "python -m sdp.round"
DESCRIPTION = (
    "One round of self-distillation, resumable, looped. `--config FILE.yaml` replaces the defaults below "
    "with the file's values (configs/default.yaml is the default written out); flags given after it "
    "override the file; a dict field takes a YAML mapping merged key by key (--sampling '{temperature: 0.7}')."
)
# Keys TrlParser itself takes from a config file.
_YAML_EXTRA = ("env",)


class ConfigNameError(ValueError):
    """A command-line flag or config-file key that is not a field (the message names the closest one)."""


def _names(cls: type) -> tuple[set[str], set[str]]:
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    # HfArgumentParser adds --no_<field> for bool fields that default to True.
    negated = {f"no_{f.name}" for f in dataclasses.fields(cls) if f.default is True}
    return fields, negated


def check_names(cls: type, argv: Sequence[str], file_cls: type | None = None, prog: str = PROG) -> None:
    """Raise `ConfigNameError` for an unknown `--flag` in `argv` or an unknown key of its `--config` file.

    Flags must be fields of `cls`; the file's keys fields of `file_cls` (default `cls`): `sdp.evaluate` reads a
    round's config file, whose training keys it does not use.
    """
    fields, negated = _names(cls)
    file_fields = _names(file_cls)[0] if file_cls is not None else fields
    flags = fields | negated | {"config", "help"}
    for i, arg in enumerate(argv):
        if not arg.startswith("--") or arg == "--":
            continue
        if i > 0 and argv[i - 1] in ("--config",):
            continue
        name = arg[2:].split("=", 1)[0].replace("-", "_")
        if name not in flags:
            raise ConfigNameError(f"unknown option --{name}{_hint(name, flags, '--', prog)}")
    if "--config" in argv:
        index = list(argv).index("--config")
        if index + 1 >= len(argv):
            raise ConfigNameError("--config needs a YAML file")
        path = Path(argv[index + 1])
        if not path.is_file():
            raise ConfigNameError(f"--config {path}: no such file")
        data: Any = yaml.safe_load(path.read_text())
        if not isinstance(data, dict):
            raise ConfigNameError(f"--config {path}: expected a YAML mapping of config fields")
        for key in data:
            if key not in file_fields and key not in _YAML_EXTRA:
                raise ConfigNameError(f"{path}: unknown key {key!r}{_hint(str(key), file_fields, '', prog)}")


def negated_help(parser: Any) -> None:
    """Give HfArgumentParser's `--no_<flag>` options their own help (it copies the positive flag's)."""
    for action in parser._actions:
        name = action.option_strings[0] if action.option_strings else ""
        if name.startswith("--no_") and action.dest == name[len("--no_"):]:
            action.help = f"Turn --{action.dest} off."


def _hint(name: str, names: set[str], prefix: str, prog: str = PROG) -> str:
    hint = closest(name, sorted(names))
    return hint.replace("mean ", f"mean {prefix}") if hint else f"; `{prog} --help` lists them"
