"""``make bench``: run every benchmark, each part in a subprocess of its own with a hard time limit (one local
stack per process; a hung part is killed, reported, and the others still run), then write BENCHMARKS.md.

    python -m holdline_local.bench [--sizes 100,1000] [--out BENCHMARKS.md]
    python -m holdline_local.bench part {floor,coldstart,cost,latency,scale,soak} [--n N] ...  (one part, JSON out)
    python -m holdline_local.bench part soak --n 240 --rate 7.2 [--throttle-tracker-s 30]   (one overload soak)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# Calls arriving per second in the fixed-rate scale runs: the one-process stack's capacity before each function
# ran in execution environments of its own (issue 11), kept as the baseline the capacity search must double.
DEFAULT_RATE = 1.2
# The capacity search: probe runs of PROBE_N calls at rising arrival rates until one fails its outcome check,
# then N = CAPACITY_N at the highest rate that passed (one step down if that fails). The stack's capacity is
# the highest rate at which all CAPACITY_N calls passed.
PROBE_RATES = (2.4, 3.6, 4.8, 6.0, 7.2, 8.4, 9.6, 12.0)
PROBE_N = 150
CAPACITY_N = 1000
# The overload soak (issues 12 and 19): this many calls at SOAK_FACTOR times the capacity, then the drain; and
# again with the tracker table's writes throttled for SOAK_THROTTLE_S seconds once the debits have started.
SOAK_N = 240
SOAK_FACTOR = 3
SOAK_THROTTLE_S = 30.0
CONNECT_FACING = {
    "ConfigLookupFunction": "holdline.handlers.config_lookup",
    "StarterFunction": "holdline.handlers.starter",
    "StatusFunction": "holdline.handlers.status",
    "ResultsFunction": "holdline.handlers.results",
    "OutcomeWaiterFunction": "holdline.handlers.outcome_waiter",
}


def memory_by_function() -> dict[str, int]:
    from holdline_local.template import load_template

    template = load_template()
    default = int(template.get("Globals", {}).get("Function", {}).get("MemorySize", 128))
    return {
        name: int(resource.get("Properties", {}).get("MemorySize", default))
        for name, resource in template["Resources"].items()
        if resource.get("Type") == "AWS::Serverless::Function"
    }


def _quiet_stdout() -> Any:
    """Powertools writes its JSON logs to stdout (CloudWatch on Lambda): send them to /dev/null, keeping their
    cost, and return a file on the real stdout for this part's JSON."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    return os.fdopen(saved, "w")


def run_part(args: argparse.Namespace) -> int:
    answer = _quiet_stdout()
    result: Any
    if args.part == "coldstart":
        from holdline_local.bench import coldstart

        result = [
            {
                "function": c.function,
                "module": c.module,
                "ratio": c.ratio,
                "ours_s": c.seconds,
                "boto3_s": c.boto3_seconds,
                "biggest": c.biggest,
            }
            for c in coldstart.measure(CONNECT_FACING, repetitions=args.repetitions)
        ]
    else:
        from holdline_local.bench import costrun

        if args.part == "cost":
            costrun.install_counter()
        from holdline_local.stack import LocalStack

        # INFO as deployed (the template's LogLevel default): logging is part of what the handlers cost.
        # The cost part counts what one call consumes: no schedule fires beside it (the sweeper's reads and
        # invocations are the stack's background, not a call's).
        with LocalStack(time_scale=0.01, log_level="INFO", schedules=args.part != "cost") as stack:
            if args.part == "floor":
                from holdline_local.bench import floor

                result = floor.run(stack, rounds=args.rounds)
            elif args.part == "cost":
                result = costrun.run(stack, memory_by_function())
            elif args.part == "latency":
                from holdline_local.bench import latency

                result = latency.run(stack, offsets=args.offsets, workers=min(args.workers, 8))
            else:
                import importlib

                # The scale run and the overload soak drive calls alike (holdline_local/bench/scale.drive).
                calls = importlib.import_module(f"holdline_local.bench.{args.part}")
                fault = {"throttle_s": args.throttle_tracker_s} if args.part == "soak" else {}
                result = calls.run(
                    stack,
                    args.n,
                    workers=min(args.n, args.workers),
                    caller_time_scale=args.caller_time_scale,
                    arrivals_per_s=args.rate,
                    deadline_s=args.deadline,
                    **fault,
                )
    answer.write(json.dumps(result, default=str) + "\n")
    answer.flush()
    # Caller threads of an unfinished scale run must not keep the process alive.
    os._exit(0)


def _subprocess(part: list[str], timeout: float) -> tuple[Any, str, float]:
    started = time.monotonic()
    command = [sys.executable, "-m", "holdline_local.bench", "part", *part]
    print(f"bench: {' '.join(part)} (limit {timeout:.0f} s)", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return None, f"killed after {timeout:.0f} s", time.monotonic() - started
    elapsed = time.monotonic() - started
    if done.returncode != 0 or not done.stdout.strip():
        return None, f"exit {done.returncode}: {done.stderr[-1500:]}", elapsed
    return json.loads(done.stdout.strip().splitlines()[-1]), "", elapsed


def _scale_args(n: int, rate: float) -> tuple[list[str], float]:
    # A deadline inside the run (unfinished calls are reported as stuck) and a kill outside it.
    deadline = 120 + n / rate * 2
    return ["scale", "--n", str(n), "--rate", str(rate), "--deadline", str(deadline)], deadline + 120


def _run_into(results: dict[str, Any], name: str, part_args: list[str], limit: float) -> Any:
    value, error, elapsed = _subprocess(part_args, limit)
    results[name] = value
    results["elapsed"][name] = elapsed
    if error:
        results["errors"][name] = error
        print(f"bench: {name} FAILED: {error}", file=sys.stderr)
    return value


def capacity_search(results: dict[str, Any], rates: list[float]) -> dict[str, Any]:
    """The highest arrival rate at which CAPACITY_N calls all pass the outcome check. Probes of PROBE_N calls
    climb the rates until one fails; the full run takes the highest passing rate, then one step down if the
    full run fails there (a backlog that a short probe absorbs can still sink a long run)."""
    passed: list[float] = []
    for rate in sorted(rates):
        probe = _run_into(results, f"probe-{rate:g}", *_scale_args(PROBE_N, rate))
        if not (probe or {}).get("ok"):
            break
        passed.append(rate)
    confirmed: float | None = None
    for rate in sorted(passed, reverse=True)[:2]:
        full = _run_into(results, f"capacity-{rate:g}", *_scale_args(CAPACITY_N, rate))
        if (full or {}).get("ok"):
            confirmed = rate
            break
    return {"probe_n": PROBE_N, "n": CAPACITY_N, "rates": sorted(rates), "passed_probes": passed, "rate": confirmed}


def machine() -> dict[str, str]:
    import moto

    memory = ""
    try:
        with open("/proc/meminfo") as meminfo:
            kb = int(meminfo.readline().split()[1])
            memory = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        memory = "unknown"
    return {
        "cores": str(os.cpu_count()),
        "memory": memory,
        "cpu": platform.processor() or platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "moto": moto.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m holdline_local.bench")
    sub = parser.add_subparsers(dest="command")
    part = sub.add_parser("part")
    part.add_argument("part", choices=["floor", "coldstart", "cost", "latency", "scale", "soak"])
    part.add_argument("--n", type=int, default=100)
    part.add_argument("--workers", type=int, default=1000)
    part.add_argument("--rate", type=float, default=DEFAULT_RATE)
    part.add_argument("--caller-time-scale", type=float, default=1.0)
    part.add_argument("--deadline", type=float, default=1200.0)
    part.add_argument("--rounds", type=int, default=300)
    part.add_argument("--repetitions", type=int, default=7)
    part.add_argument("--offsets", type=int, default=32, help="latency: settlement times per design")
    part.add_argument(
        "--throttle-tracker-s",
        type=float,
        default=0.0,
        help="soak: throttle the tracker table's writes this long once the debits have started (0: no fault)",
    )
    parser.add_argument("--sizes", default="100", help="fixed-rate scale runs (at --rate)")
    parser.add_argument("--probe-rates", default=",".join(f"{r:g}" for r in PROBE_RATES))
    parser.add_argument("--no-capacity", dest="capacity", action="store_false", help="skip the capacity search")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="calls arriving per second in the scale runs")
    parser.add_argument("--soak-n", type=int, default=SOAK_N, help="overload soak: calls (0 skips it)")
    parser.add_argument(
        "--soak-rate", type=float, default=0.0, help=f"overload soak: arrivals (default {SOAK_FACTOR}x capacity)"
    )
    parser.add_argument(
        "--soak-throttle-s",
        type=float,
        default=SOAK_THROTTLE_S,
        help="the second soak: tracker writes throttled this long once the debits have started (0 skips it)",
    )
    parser.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    parser.add_argument("--json", default="", help="also write the raw results here")
    render_cmd = sub.add_parser("render", help="re-render BENCHMARKS.md from a --json file")
    render_cmd.add_argument("results")
    args = parser.parse_args(argv)
    if args.command == "part":
        return run_part(args)

    from holdline_local.bench.report import render

    if args.command == "render":
        Path(args.out).write_text(render(json.loads(Path(args.results).read_text())))
        return 0

    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine(), "errors": {}, "elapsed": {}}
    plan: list[tuple[str, list[str], float]] = [
        ("floor", ["floor"], 600),
        ("coldstart", ["coldstart"], 600),
        ("cost", ["cost"], 300),
        ("latency", ["latency", "--workers", "6"], 420),
    ]
    for size in [int(s) for s in args.sizes.split(",") if s.strip()]:
        plan.append((f"scale-{size}", *_scale_args(size, args.rate)))
    for name, part_args, limit in plan:
        _run_into(results, name, part_args, limit)
    if args.capacity:
        results["capacity"] = capacity_search(results, [float(r) for r in args.probe_rates.split(",")])
    if args.soak_n:
        # SOAK_FACTOR times what the stack absorbs (the capacity found, else the highest probe that passed, else
        # the one-process baseline's double), so the soak really overloads it.
        capacity = results.get("capacity") or {}
        base = capacity.get("rate") or max(capacity.get("passed_probes") or [DEFAULT_RATE * 2])
        rate = args.soak_rate or round(SOAK_FACTOR * base, 1)
        part_args, limit = _scale_args(args.soak_n, rate)
        _run_into(results, "soak", ["soak", *part_args[1:]], limit + 600)
        if args.soak_throttle_s:
            throttled = ["soak", *part_args[1:], "--throttle-tracker-s", f"{args.soak_throttle_s:g}"]
            _run_into(results, "soak-ddb-throttled", throttled, limit + 600 + args.soak_throttle_s)
    results["total_s"] = time.monotonic() - started
    results["command"] = "make bench  (= .venv/bin/python -m holdline_local.bench" + (
        f" --sizes {args.sizes} --rate {args.rate:g}" + ("" if args.capacity else " --no-capacity") + ")"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    Path(args.out).write_text(render(results))
    print(f"bench: wrote {args.out} in {results['total_s']:.0f} s", file=sys.stderr)
    failed = (
        bool(results["errors"])
        or any(not (results.get(k) or {}).get("ok", False) for k in results if k.startswith("scale-"))
        or (args.capacity and results["capacity"]["rate"] is None)
        or (args.soak_n and not (results.get("soak") or {}).get("ok", False))
        or (args.soak_n and args.soak_throttle_s and not (results.get("soak-ddb-throttled") or {}).get("ok", False))
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
