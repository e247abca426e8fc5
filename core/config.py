"""Configuration loading shared by every package: YAML files and dataclass validation.

``from_dict`` builds a dataclass from a mapping and names the key path of any unknown key or
wrongly typed value (``config key 'near_dedup.n_grams': expected int, got 'five'``);
``load_yaml`` reads a YAML file the user names and says which file is missing or broken.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

import yaml

from core.errors import JcurateError, first_line


class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that refuses anchors/aliases: configs never need them, and nested aliases
    expand exponentially (a "billion laughs" file)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"aliases are not allowed (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)


MAX_ERROR_CHARS = 300


def load_yaml(path: str | Path, what: str):
    """The parsed YAML of ``path``; ``what`` names the file in errors ("train config").

    Anchors and aliases are refused; error messages are one line of at most 300 characters.

    >>> load_yaml("no/such.yaml", "train config")
    Traceback (most recent call last):
    ...
    core.errors.JcurateError: train config not found: no/such.yaml
    """
    path = Path(path)
    if not path.is_file():
        raise JcurateError(f"{what} not found: {path}")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_NoAliasLoader)  # a SafeLoader subclass
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise JcurateError(f"{what} {path} is not valid YAML: {first_line(e)}"[:MAX_ERROR_CHARS]) from None


def in_range(key: str, value, low, high) -> None:
    if low is not None and value < low or high is not None and value > high:
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise JcurateError(f"config key '{key}': must be {bounds}, got {value!r}")


def coerce(key: str, value, tp):
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(key, value, option)
            except JcurateError:
                continue
        raise JcurateError(f"config key '{key}': expected {tp}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise JcurateError(f"config key '{key}': expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [coerce(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise JcurateError(f"config key '{key}': expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls, data, prefix: str = ""):
    """Build dataclass ``cls`` from a mapping, naming any unknown key or wrongly typed value."""
    if not isinstance(data, dict):
        raise JcurateError(f"config key '{prefix or '<top>'}': expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in known:
            raise JcurateError(f"config key '{path}': unknown key (known keys: {', '.join(sorted(known))})")
        kwargs[key] = coerce(path, value, hints[key])
    return cls(**kwargs)
