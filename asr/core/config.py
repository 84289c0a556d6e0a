"""Configs as data: YAML files plus `key.path=value` overrides, checked against dataclasses.

Every config in the package is a dataclass. `from_dict` builds one from plain data and refuses
unknown keys and values of the wrong type with a message that names the key, so a typo in a
config file fails before any work starts.
"""

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from asr.core.errors import AsrError


class ConfigError(AsrError, ValueError):
    """A config key or command-line setting that is unknown, of the wrong type or out of range."""


def read_yaml(path) -> dict:
    """The mapping in a YAML file (an empty file is an empty mapping)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the config as UTF-8") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys to values")
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set `a.b.c=value` overrides (values parsed as YAML) into a nested mapping, in place."""
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {override!r} is not of the form key.path=value")
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {override!r}: {part!r} is not a section")
        node[leaf] = yaml.safe_load(text)
    return data


def from_dict(cls, data: Any, where: str = ""):
    """Build dataclass `cls` from a mapping, recursively; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key '{where}{unknown[0]}'; known keys here: {', '.join(fields)}")
    kwargs = {name: convert(fields[name].type, value, f"{where}{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def convert(tp, value: Any, key: str):
    """Check `value` against type annotation `tp`, building nested dataclasses."""
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, f"{key}.")
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return convert(option, value, key)
            except ConfigError:
                continue
        raise type_error(key, tp, value)
    if origin is list:
        if not isinstance(value, list):
            raise type_error(key, tp, value)
        return [convert(args[0], item, f"{key}[{i}]") for i, item in enumerate(value)] if args else value
    if tp is Any:
        return value
    if origin is typing.Literal:
        if any(value == option and type(value) is type(option) for option in args):
            return value
        raise ConfigError(f"config key {key!r} must be one of {', '.join(map(repr, args))}, got {value!r}")
    if tp is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        return parse_float(value, key)
    if tp is type(None):
        if value is None:
            return None
        raise type_error(key, tp, value)
    if not isinstance(value, origin or tp) or (tp is int and isinstance(value, bool)):
        raise type_error(key, tp, value)
    return value


def parse_float(value: int | str, key: str) -> float:
    """Floats may be written as ints, or as strings like "1e-4" that YAML 1.1 leaves unparsed."""
    try:
        return float(value)
    except ValueError:
        raise type_error(key, float, value) from None


def type_error(key: str, tp, value) -> ConfigError:
    name = tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")  # "Optional[int]", "list[str]"
    return ConfigError(f"config key {key!r} must be {name}, got {value!r}")


def to_dict(config) -> dict:
    """Plain data (dicts, lists, numbers, strings) for a dataclass config."""
    return dataclasses.asdict(config)
