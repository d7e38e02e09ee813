"""Load and validate a pipeline config against ``workflow/schemas/config.schema.yaml``.

Validation happens before any job runs, fills in the schema's defaults, and
names the offending key in every error (``frames.size: [64] is too short``).
"""

from __future__ import annotations

import argparse
import copy
import logging
from pathlib import Path
from typing import Any

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
