"""Load and validate a pipeline config against ``workflow/schemas/config.schema.yaml``.

Validation happens before any job runs, fills in the schema's defaults, and
names the offending key in every error (``frames.size: [64] is too short``).
A stage receives its slice of the config as ``--config-json`` (inline JSON or a
file) and turns it into its typed dataclass with :func:`config_from_mapping`.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml

log = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config that does not match the schema; the message names each bad key."""


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def _fill_defaults(config: Any, schema: dict) -> Any:
    if not isinstance(config, dict) or schema.get("type") != "object":
        return config
    for key, sub in schema.get("properties", {}).items():
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if key in config:
            _fill_defaults(config[key], sub)
    return config


def validate(config: dict, schema: dict | None = None) -> dict:
    """A validated copy of ``config`` with defaults filled in; ConfigError otherwise."""
    schema = schema or load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors:
            key = ".".join(str(p) for p in e.absolute_path) or "(top level)"
            lines.append(f"config key '{key}': {e.message}")
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines))
    return _fill_defaults(copy.deepcopy(config), schema)


def load(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        config = yaml.safe_load(fh) or {}
    try:
        return validate(config)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_from_mapping(cls: type, values: Mapping[str, Any] | None, name: str) -> Any:
    """Build dataclass ``cls`` from a config slice; unknown keys fail naming the key."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{name}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    return cls(**values)


def read_config_arg(text: str | None) -> dict[str, Any]:
    """A ``--config-json`` value: inline JSON, or a path to a .json / .yaml file."""
    if not text:
        return {}
    stripped = text.strip()
    if stripped.startswith("{"):
        return json.loads(stripped)
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"--config-json: neither JSON nor a file: {text!r}")
    if path.suffix in (".yaml", ".yml"):
        return yaml.safe_load(path.read_text()) or {}
    return json.loads(path.read_text())


def slice_from_args(cls: type, args: argparse.Namespace, name: str, overrides: tuple[str, ...] = ()) -> Any:
    """The config slice of ``--config-json`` with the command-line ``overrides`` applied
    (those attributes of ``args`` that are not None)."""
    values = read_config_arg(args.config_json)
    for key in overrides:
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    return config_from_mapping(cls, values, name)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path)


def run(args: argparse.Namespace) -> int:
    try:
        load(args.config)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    log.info("%s is valid", args.config)
    return 0
