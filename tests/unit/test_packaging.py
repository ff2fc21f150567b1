"""The Lambda package stays lean and separate from the local tooling."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

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


# The Connect-facing handlers whose cold start is on the caller's line: none may import pydantic (status,
# results and the outcome waiter never validate a request; the starter's transfer model is plain code) nor
# the X-Ray SDK (the Connect path makes no Powertools Tracer). Import time itself is `make bench`'s business.
CONNECT_FACING_MODULES = [
    "holdline.handlers.starter",
    "holdline.handlers.status",
    "holdline.handlers.results",
    "holdline.handlers.config_lookup",
]
HEAVY_AT_IMPORT = ("pydantic", "pydantic_core", "aws_xray_sdk")


@pytest.mark.parametrize("module", CONNECT_FACING_MODULES)
def test_connect_facing_handlers_import_no_pydantic_and_no_xray_sdk(module: str) -> None:
    # A fresh interpreter with a deployed function's environment: Tracing Active sets the function name.
    code = (
        f"import sys, {module}; "
        f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY_AT_IMPORT!r})); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {"PATH": "/usr/bin:/bin", "AWS_LAMBDA_FUNCTION_NAME": "f", "AWS_REGION": "us-east-1"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO / "functions", env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_import_guard_sees_a_heavy_import() -> None:
    """The guard above can fail: the follow-up model is pydantic, so importing it is caught."""
    code = (
        "import sys, holdline.models.follow_up; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY_AT_IMPORT!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO / "functions", capture_output=True, text=True, check=True
    )
    assert "pydantic" in result.stdout
