"""``holdline``: the local tooling's one entry point.

holdline local up [--port N]          run the local stack in the foreground until Ctrl-C
holdline simulate [--event FILE]      play one simulated Connect call through flows/transfer-flow.json
holdline dlq list|show Q|redrive Q    dead letters of a local (--endpoint) or deployed (--stack-name) stack
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from holdline_local.template import REPO_ROOT

DEFAULT_EVENT = REPO_ROOT / "events" / "starter.json"
DEFAULT_FLOW = REPO_ROOT / "flows" / "transfer-flow.json"


def _load_event(path: Path) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(path.read_text())
    return event


def _fresh_contact(event: dict[str, Any]) -> dict[str, Any]:
    """A new call is a new contact: a fixed ContactId would replay the previous run's transfer."""
    contact = event.setdefault("Details", {}).setdefault("ContactData", {})
    contact["ContactId"] = contact["InitialContactId"] = str(uuid.uuid4())
    return event


def cmd_local_up(args: argparse.Namespace) -> int:
    from holdline_local.iam import ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY
    from holdline_local.stack import LocalStack

    stack = LocalStack(
        port=args.port,
        bank_port=args.bank_port,
        time_scale=args.time_scale,
        timeout_scale=args.timeout_scale,
        log_level=args.log_level,
        enforce_iam=not args.no_iam,
        account_concurrency=args.account_concurrency,
        max_environments=args.max_environments,
        cloudwatch_logs=True,
    )
    stack.start()
    assert stack.bank is not None
    iam_note = "IAM off: every call allowed (kinder than AWS)" if args.no_iam else "IAM enforced per role"
    print(f"Holdline local stack (moto {_moto_version()}) built from template.yaml")
    print(f"  AWS endpoint : {stack.endpoint}   (region us-east-1; {iam_note})")
    print(f"  sandbox bank : {stack.bank.url}")
    print(f"  time scale   : {args.time_scale} (Wait states, retry intervals, schedules)")
    print(f"  timeouts     : x{args.timeout_scale} (functions' Timeout and tasks' TimeoutSeconds)")
    print(
        f"  functions    : {len(stack.stack.functions) if stack.stack else 0}, each in execution environments "
        f"of its own (at most {args.max_environments} each; account concurrency {args.account_concurrency})"
    )
    print("Point the AWS CLI or an SDK at it with the local administrator's key:")
    print(
        f"  export AWS_ACCESS_KEY_ID={ADMIN_ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY={ADMIN_SECRET_ACCESS_KEY} "
        "AWS_DEFAULT_REGION=us-east-1"
    )
    print("Try:")
    print(
        f"  aws --endpoint-url {stack.endpoint} lambda invoke "
        "--function-name StarterFunction --payload fileb://events/starter.json /dev/stdout"
    )
    print(f"  aws --endpoint-url {stack.endpoint} logs tail /aws/lambda/StarterFunction --follow")
    print(f"  holdline simulate --endpoint {stack.endpoint}")
    print(f"  holdline dlq --endpoint {stack.endpoint} list")
    print("Ctrl-C stops it.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
    return 0


def _moto_version() -> str:
    import moto

    return str(moto.__version__)


def cmd_simulate(args: argparse.Namespace) -> int:
    from holdline_local.simulator import FlowRuleViolation, SimulatedCall, format_step
    from holdline_local.simulator.terminal import LEGEND

    event = _fresh_contact(_load_event(Path(args.event)))
    quiet = args.json
    scenario = None
    if args.scenario:
        from holdline_local import scenarios

        if args.endpoint:
            print("--scenario configures the embedded stack's bank; it cannot be used with --endpoint", file=sys.stderr)
            return 2
        scenario = scenarios.get(args.scenario)
        args.expect = args.expect or scenario.expect

    def show(step: Any) -> None:
        if not quiet:
            print(format_step(step), flush=True)

    def run(invoke: Any, where: str, functions: Mapping[str, str] | None = None) -> int:
        if not quiet:
            contact = event["Details"]["ContactData"]["ContactId"]
            print(f"Simulated Amazon Connect call through {Path(args.flow).name}, contact {contact}")
            print(f"  against {where}; prompts play at time scale {args.time_scale}")
            print(LEGEND)
        try:
            call = SimulatedCall(
                invoke, event, flow_path=Path(args.flow), functions=functions, time_scale=args.time_scale, on_step=show
            )
        except FlowRuleViolation as exc:
            print("The flow breaks Connect's rules:\n  " + "\n  ".join(exc.violations), file=sys.stderr)
            return 2
        report = call.run()
        if quiet:
            print(json.dumps(report.to_json(), indent=2))
        else:
            print(f"Outcome: {report.outcome}" + (f" ({report.error_code})" if report.error_code else ""))
            invocations = report.to_json()["invocations"]
            print(f"Call ended: {report.ending}; {len(report.path)} flow actions, {invocations} invocations")
            for branch in report.error_branches:
                print(f"Error branch: {branch}")
            print(f"Caller hears: {report.caller_hears}")
        if args.expect and report.outcome != args.expect:
            print(f"expected outcome {args.expect}, got {report.outcome}", file=sys.stderr)
            return 1
        return 0 if report.completed else 1

    if args.stack:
        invoke, functions = _deployed_stack(args.stack)
        return run(invoke, f"the deployed stack {args.stack}", functions)
    if args.endpoint:
        return run(_lambda_invoker(_endpoint_client(args.endpoint)), args.endpoint)
    from holdline_local.stack import LocalStack

    with LocalStack(time_scale=args.time_scale) as stack:
        if scenario is not None:
            from holdline_local import scenarios

            assert stack.bank is not None
            scenarios.apply(scenario, stack.bank, event)
            if not quiet:
                print(f"Scenario {scenario.name}: {scenario.description}")
        return run(_lambda_invoker(_endpoint_client(stack.endpoint)), f"the embedded local stack at {stack.endpoint}")


def _deployed_stack(stack_name: str) -> tuple[Any, dict[str, str]]:
    """An invoker for a stack deployed with sam deploy (your AWS credentials), and the flow's placeholders
    mapped to the stack's physical function names."""
    import boto3

    from holdline_local.flows import function_placeholders

    resources = boto3.client("cloudformation").describe_stack_resources(StackName=stack_name)["StackResources"]
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources}
    functions = {name: physical[logical] for name, logical in function_placeholders().items()}
    return _lambda_invoker(boto3.client("lambda", config=_connect_like_config())), functions


def _connect_like_config() -> Any:
    from botocore.config import Config

    # As Connect invokes: an asynchronous block waits up to 60 s for its answer, so the read timeout is longer
    # than that; one attempt per invoke (the simulator plays Connect's own retries, and a retried read timeout
    # would run the function twice).
    return Config(read_timeout=75, connect_timeout=5, retries={"total_max_attempts": 1})


def _local_endpoint(endpoint: str, region: str | None = None) -> dict[str, Any]:
    """Client options for a local stack: its endpoint and its local administrator's fixed key (the local
    stack enforces IAM, so any other key is refused)."""
    from holdline_local.iam import admin_credentials

    return {"endpoint_url": endpoint, "region_name": region or "us-east-1", **admin_credentials()}


def _endpoint_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("lambda", config=_connect_like_config(), **_local_endpoint(endpoint))


def _init_duration(answer: Mapping[str, Any]) -> dict[str, float]:
    """Lambda's REPORT line in the log tail (``LogType=Tail``) says ``Init Duration`` after a cold start."""
    import base64
    import re

    tail = base64.b64decode(answer.get("LogResult", "") or "").decode("utf-8", "replace")
    found = re.search(r"Init Duration: ([0-9.]+) ms", tail)
    return {"initDurationMs": float(found.group(1))} if found else {}


def _lambda_invoker(client: Any) -> Any:
    from botocore.exceptions import ClientError

    from holdline_local.simulator import InvocationRefused

    def invoke(function: str, event: Mapping[str, Any]) -> tuple[Any, str | None, dict[str, float]]:
        try:
            answer = client.invoke(FunctionName=function, Payload=json.dumps(event).encode(), LogType="Tail")
        except ClientError as exc:  # throttled, no permission, no such function: Lambda refused to run it
            raise InvocationRefused(exc.response.get("Error", {}).get("Code", "ClientError")) from exc
        raw = answer["Payload"].read()
        try:
            payload = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            payload = raw.decode(errors="replace")
        return payload, answer.get("FunctionError"), _init_duration(answer)

    def dry_run(function: str) -> None:
        # Lambda's DryRun invocation type is the question, but moto runs the function for it: GetFunction
        # answers "no such function", the refusal an asynchronous block can meet at once.
        try:
            client.get_function(FunctionName=function)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            if code == "ResourceNotFoundException":
                raise InvocationRefused(code) from exc

    invoke.dry_run = dry_run  # type: ignore[attr-defined]
    return invoke


def cmd_dlq(args: argparse.Namespace) -> int:
    """Dead-letter queues (holdline_local/dlq.py): found from template.yaml, reached by logical ID."""
    import boto3

    from holdline_local import dlq

    if args.endpoint:
        options: dict[str, Any] = _local_endpoint(args.endpoint, args.region)
    else:  # a deployed stack with the default credential chain
        options = {"region_name": args.region} if args.region else {}

    def client(service: str) -> Any:
        return boto3.client(service, **options)

    if args.endpoint:
        queue_url = dlq.local_queue_url(client("sqs"))
    elif args.stack_name:
        queue_url = dlq.stack_queue_url(client("cloudformation"), args.stack_name)
    else:
        print("give --endpoint (local stack) or --stack-name (deployed stack)", file=sys.stderr)
        return 2
    letters = dlq.DeadLetters(client, queue_url)
    try:
        if args.dlq_command == "list":
            result: Any = letters.summary()
        elif args.dlq_command == "show":
            result = letters.show(args.queue, args.max)
        else:
            result = letters.redrive(args.queue, args.max)
    except (KeyError, ValueError) as exc:  # an unknown queue, or one that cannot be replayed
        print(exc.args[0], file=sys.stderr)
        return 2
    if args.json or args.dlq_command != "list":
        print(json.dumps(result, indent=2, default=str))
    else:
        print(dlq.render_summary(result))
    return 1 if isinstance(result, dict) and result.get("failed") else 0


def _scenario_names() -> list[str]:
    from holdline_local.scenarios import SCENARIOS

    return list(SCENARIOS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="holdline", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    local = commands.add_parser("local", help="the embedded local stack")
    local_commands = local.add_subparsers(dest="local_command", required=True)
    up = local_commands.add_parser("up", help="run the local stack in the foreground until Ctrl-C")
    up.add_argument("--port", type=int, default=4566, help="AWS endpoint port (default 4566; 0 picks a free one)")
    up.add_argument("--bank-port", type=int, default=0, help="sandbox bank port (default: a free one)")
    up.add_argument("--time-scale", type=float, default=1.0, help="multiplies Wait states and retry intervals")
    up.add_argument("--log-level", default="INFO", help="the functions' log level (POWERTOOLS_LOG_LEVEL)")
    up.add_argument(
        "--timeout-scale", type=float, default=1.0, help="multiplies functions' Timeout and tasks' TimeoutSeconds"
    )
    up.add_argument("--account-concurrency", type=int, default=1000, help="Lambda's account concurrency limit")
    up.add_argument("--max-environments", type=int, default=8, help="execution environments per function at most")
    up.add_argument(
        "--no-iam", action="store_true", help="allow every call (kinder than AWS: for debugging a policy only)"
    )
    up.set_defaults(func=cmd_local_up)

    simulate = commands.add_parser("simulate", help="play one simulated Connect call end to end")
    simulate.add_argument("--event", default=str(DEFAULT_EVENT), help="the starter's ContactFlowEvent (JSON file)")
    simulate.add_argument("--json", action="store_true", help="print a machine-readable summary only")
    simulate.add_argument("--time-scale", type=float, default=0.02, help="hold prompts and Waits run this much faster")
    simulate.add_argument("--endpoint", help="a running local stack (holdline local up) instead of an embedded one")
    simulate.add_argument("--expect", help="exit 1 unless the outcome is this (e.g. SUCCEEDED)")
    simulate.add_argument(
        "--scenario",
        choices=sorted(_scenario_names()),
        help="configure the sandbox bank's faults for an interesting outcome (see holdline_local/scenarios.py)",
    )
    simulate.add_argument(
        "--flow", default=str(DEFAULT_FLOW), help="the Connect flow to interpret (flow language JSON)"
    )
    simulate.add_argument("--stack", help="a stack deployed with sam deploy (uses your AWS credentials)")
    simulate.set_defaults(func=cmd_simulate)

    dead = commands.add_parser("dlq", help="inspect and replay dead letters (docs/failure-events.md)")
    dead.add_argument("--endpoint", help="a running local stack (holdline local up)")
    dead.add_argument("--stack-name", help="a deployed stack (default AWS credentials)")
    dead.add_argument("--region", help="AWS region of the deployed stack")
    dead.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of a table")
    dead_commands = dead.add_subparsers(dest="dlq_command", required=True)
    dead_commands.add_parser("list", help="every DLQ of the template: kind, source, depth")
    for name, text in (("show", "peek at messages, attributes normalized"), ("redrive", "replay, then delete")):
        sub = dead_commands.add_parser(name, help=text)
        sub.add_argument("queue", help="the queue's logical ID, e.g. ReconcilerTargetDLQ")
        sub.add_argument("--max", type=int, default=10, help="at most this many messages")
    dead.set_defaults(func=cmd_dlq)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
