"""The code's own shape: short functions, one training loop, imports at the top, a workflow that lints
clean and is formatted, sub-packages that name the rules they serve."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

BIN = Path(sys.executable).parent
SOURCES = sorted((REPO / "pipeline").rglob("*.py")) + sorted((REPO / "models").glob("*.py"))
# A nested import is allowed only where a heavy module must stay out of a CPU-only stage:
# encoding is used by the data stages, which must not import torch unless given a tensor.
NESTED_IMPORTS_ALLOWED = {("pipeline/encoding.py", "torch")}


def _functions():
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(REPO).as_posix(), node


def test_no_function_longer_than_80_lines():
    long = [f"{p}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)" for p, n in _functions()
            if n.end_lineno - n.lineno + 1 > 80]
    assert not long, long


def test_exactly_one_backward_pass_in_the_package():
    calls = [f"{p.relative_to(REPO)}:{i}" for p in SOURCES for i, line in enumerate(p.read_text().splitlines(), 1)
             if ".backward(" in line.split("#")[0]]
    assert calls == ["pipeline/train/loop.py:" + calls[0].split(":")[1]] and len(calls) == 1, calls


def test_imports_sit_at_module_top():
    nested = []
    for path, fn in _functions():
        for sub in ast.walk(fn):
            if isinstance(sub, (ast.Import, ast.ImportFrom)):
                module = sub.module if isinstance(sub, ast.ImportFrom) else sub.names[0].name
                if (path, module) not in NESTED_IMPORTS_ALLOWED:
                    nested.append(f"{path}:{sub.lineno} {fn.name}: {ast.unparse(sub)}")
    assert not nested, nested


def test_every_sub_package_names_the_rules_it_serves():
    rules = set(re.findall(r"^(?:rule|checkpoint) (\w+):", "\n".join(
        p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk")), flags=re.M))
    served = set()
    for init in sorted((REPO / "pipeline").glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert doc, f"{init} has no docstring"
        if init.parent.name != "flow":  # the estimators serve the data rules through pipeline.data
            named = set(re.findall(r"``(\w+)``", doc)) & rules
            assert named, f"{init}: its docstring names none of the workflow's rules"
            served |= named
    assert rules - {"all", "prepare_data"} <= served, rules - served


@pytest.mark.parametrize("command", [["snakemake", "--lint"], ["snakefmt", "--check", "workflow/"]])
def test_workflow_lints_clean_and_is_formatted(command):
    proc = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    if command[0] == "snakemake":
        assert not re.search(r"^Lints for", out, flags=re.M), out[-3000:]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_conda_environment_matches_pyproject():
    """environment.yml cannot be solved here (no conda channel): it must at least ask for exactly
    the package's dependencies, with the same version ranges, and install the package itself."""
    import tomllib

    import yaml

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    wanted = {_name(r): r.replace(" ", "") for r in project["dependencies"]}
    listed = {_name(r): r.replace(" ", "") for r in pip if not r.startswith("-e")}
    assert listed == wanted
    assert "-e ." in pip and "python=3.11" in env["dependencies"]
    assert project["requires-python"] == ">=3.11"
