"""Cold start: importing a handler module in a fresh interpreter, against a bare ``import boto3``.

Both are timed inside the fresh interpreter (interpreter start-up is the same for both and not ours), with
the environment a deployed function has: the template's Powertools variables and ``AWS_LAMBDA_FUNCTION_NAME``
(so Powertools' Tracer is on, as with ``Tracing: Active``). Repetitions are interleaved; medians are compared.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = REPO / "functions"

_TIMER = "import time\nt = time.perf_counter()\nimport {module}\nprint(time.perf_counter() - t)\n"


def lambda_env(function_name: str) -> dict[str, str]:
    """A Lambda-like environment: nothing from this shell leaks in but PATH."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(FUNCTIONS),
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "POWERTOOLS_SERVICE_NAME": "holdline",
        "POWERTOOLS_METRICS_NAMESPACE": "Holdline",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_LOGGER_LOG_EVENT": "false",
        "TRACKER_TABLE_NAME": "TrackerTable",
    }


def time_import(module: str, env: Mapping[str, str], python: str = sys.executable) -> float:
    """Seconds to import ``module`` in a fresh interpreter."""
    result = subprocess.run(  # noqa: S603 - our own interpreter, our own code
        [python, "-c", _TIMER.format(module=module)],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    if result.returncode != 0:
        raise RuntimeError(f"importing {module} failed: {result.stderr[-1000:]}")
    return float(result.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class ImportLine:
    self_us: int
    cumulative_us: int
    depth: int  # 0 for a top-level import
    name: str


def parse_importtime(stderr: str) -> list[ImportLine]:
    """Parse ``python -X importtime`` output (``import time: self [us] | cumulative | imported package``)."""
    lines: list[ImportLine] = []
    for raw in stderr.splitlines():
        if not raw.startswith("import time:"):
            continue
        body = raw[len("import time:") :]
        parts = body.split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # the header line
        name_field = parts[2]
        stripped = name_field.lstrip(" ")
        indent = len(name_field) - len(stripped) - 1  # one space after the bar, then two per level
        lines.append(ImportLine(int(parts[0]), int(parts[1]), max(0, indent // 2), stripped.strip()))
    return lines


def biggest_imports(lines: Sequence[ImportLine], top: int = 8) -> list[tuple[str, int]]:
    """Import time by top-level package (the sum of its modules' own times, so packages never overlap),
    largest first: where a lazy import could save the most."""
    by_package: dict[str, int] = {}
    for line in lines:
        root = line.name.split(".", 1)[0]
        by_package[root] = by_package.get(root, 0) + line.self_us
    return sorted(by_package.items(), key=lambda item: item[1], reverse=True)[:top]


def importtime(module: str, env: Mapping[str, str], python: str = sys.executable) -> list[ImportLine]:
    result = subprocess.run(  # noqa: S603
        [python, "-X", "importtime", "-c", f"import {module}"],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    if result.returncode != 0:
        raise RuntimeError(f"importing {module} failed: {result.stderr[-1000:]}")
    return parse_importtime(result.stderr)


@dataclass
class ColdStart:
    module: str
    function: str
    seconds: list[float]
    boto3_seconds: list[float]
    biggest: list[tuple[str, int]]

    @property
    def ratio(self) -> float:
        return statistics.median(self.seconds) / statistics.median(self.boto3_seconds)


def measure(handlers: Mapping[str, str], repetitions: int = 7) -> list[ColdStart]:
    """``handlers`` maps function logical ID to handler module. Each handler is paired with its own
    boto3 runs, interleaved, so drift on the machine hits both sides alike."""
    results = []
    for function, module in handlers.items():
        env = lambda_env(function)
        time_import(module, env)  # the first run pays for the page cache; not counted
        ours: list[float] = []
        floor: list[float] = []
        for i in range(repetitions):
            pair = [(module, ours), ("boto3", floor)]
            for name, bucket in pair if i % 2 == 0 else reversed(pair):
                bucket.append(time_import(name, env))
        results.append(ColdStart(module, function, ours, floor, biggest_imports(importtime(module, env))))
    return results
