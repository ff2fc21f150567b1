"""The Lambda package stays lean and separate from the local tooling."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _requirement_names(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[re.sub(r"\[.*\]", "", name).lower()] = version
    return pins


def test_function_requirements_match_pyproject() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    runtime = _requirement_names(pyproject["project"]["dependencies"])
    runtime.pop("boto3")  # provided by the Lambda runtime
    packaged = _requirement_names((REPO / "functions" / "requirements.txt").read_text().splitlines())
    assert packaged == runtime


def test_lambda_code_never_imports_local_tooling() -> None:
    for path in (REPO / "functions" / "holdline").rglob("*.py"):
        text = path.read_text()
        for forbidden in ("holdline_local", "moto", "requests", "yaml"):
            assert not re.search(rf"^\s*(from|import) {forbidden}\b", text, re.M), f"{path} imports {forbidden}"


def test_handlers_import_without_the_dev_tooling() -> None:
    # A fresh interpreter importing every handler must not pull in moto or the local stack.
    code = (
        "import sys, holdline.handlers.starter, holdline.handlers.status, holdline.handlers.results, "
        "holdline.handlers.bank_legs; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('moto', 'holdline_local', 'requests', 'yaml')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO / "functions", capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_local_runtime_has_the_functions_pins_and_the_runtimes_sdk() -> None:
    """.venv-lambda is what a function's execution environment has: the same pins as the package, and the
    boto3 the project pins (the one the python3.11 runtime provides)."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    project = _requirement_names(pyproject["project"]["dependencies"])
    runtime_dir = REPO / "holdline_local" / "runtime"
    runtime = _requirement_names((runtime_dir / "requirements.txt").read_text().splitlines())
    constraints = _requirement_names((runtime_dir / "constraints.txt").read_text().splitlines())
    assert runtime["boto3"] == project["boto3"]
    for name, version in {**project, **runtime}.items():
        if name in constraints:
            assert constraints[name] == version, name
    assert "moto" not in constraints and "holdline" not in constraints
