"""Everything Holdline changes in moto, in one place. Written for and tested against the moto pinned in
pyproject.toml (tests/functional/test_moto_adapter.py): a moto upgrade that moves these hooks fails there.

1. Lambda tasks run our real handlers in-process. moto's no-Docker Lambda backend echoes its input; we
   replace its ``invoke`` so that it imports the function's ``Handler`` and calls it. An exception becomes a
   Lambda "Unhandled" error whose ``errorType`` is the exception's class name, which is exactly what ASL
   ``Retry``/``Catch`` match on AWS.
3. (below, ``install_event_targets``) EventBridge rules' Lambda targets, which moto does not deliver, go to
   the local stack's emulation of EventBridge's asynchronous delivery (holdline_local/event_targets.py).
2. Time runs faster. moto's Step Functions executor really sleeps in ``Wait`` states and between retries;
   a time scale multiplies those sleeps so tests and the demo run fast while the ASL stays exactly what is
   deployed. Task ``TimeoutSeconds`` are not scaled by it: real handler work must fit in them, as on AWS.
3. Optionally, task timeouts run faster too, by a separate and gentler scale (``set_task_timeout_scale``,
   default 1.0 = off). It exists so that a test of "the bank answers after the task timed out" need not wait
   out a 10 s TimeoutSeconds: at 0.1 the task gives up after 1 s of wall-clock time while the bank call goes
   on in its thread (a task timeout does not stop the Lambda, here as on AWS). Keep it well above the
   handlers' real run time, or healthy tasks time out too.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.config import default_user_config
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.exec import execute_state
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.parser.asl.eval.environment import Environment


@dataclass(frozen=True)
class LocalFunction:
    """A function of the template as the adapter runs it."""

    name: str
    handler: str  # "package.module.attribute"
    code_uri: Path
    timeout: int
    arn: str


class LocalLambdaContext:
    """The parts of the Lambda context object our handlers (and Powertools) read."""

    def __init__(self, function: LocalFunction) -> None:
        self.function_name = function.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function.arn
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function.name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + function.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


Invocation = Callable[[dict[str, Any], LocalLambdaContext], Any]

# Which function this thread is running for the local stack (None outside a dispatched invocation). Tests
# that wrap a process-wide seam (say aws.client) use it to leave the stack's own background work alone.
_running = threading.local()


def running_function() -> str | None:
    """The function the current thread runs as a dispatched Lambda invocation, if any."""
    return getattr(_running, "function", None)


class LambdaInvokeRefused(Exception):
    """The Lambda service refused the invoke itself (the function never ran): what EventBridge retries."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code


class LambdaDispatcher:
    """Maps function names to our handlers and runs them in-process; counts invocations for tests."""

    def __init__(self) -> None:
        self._functions: dict[str, LocalFunction] = {}
        self._handlers: dict[str, Invocation] = {}
        self._lock = threading.Lock()
        self.invocations: dict[str, int] = {}
        #: Tests: refuse the next N invokes of a function as throttled, as Lambda does at its concurrency limit.
        self.throttle: dict[str, int] = {}

    def register(self, function: LocalFunction) -> None:
        self._functions[function.name] = function
        self._functions[function.arn] = function

    def _handler_for(self, function: LocalFunction) -> Invocation:
        with self._lock:
            if function.name not in self._handlers:
                # All our functions share one code package, so one sys.path entry serves them all and no two
                # functions' same-named modules can shadow each other in sys.modules.
                code_path = str(function.code_uri.resolve())
                if code_path not in sys.path:
                    sys.path.insert(0, code_path)
                module_name, _, attribute = function.handler.rpartition(".")
                self._handlers[function.name] = getattr(importlib.import_module(module_name), attribute)
            return self._handlers[function.name]

    def knows(self, name: str) -> bool:
        return self._find(name) is not None

    def _find(self, name: str) -> LocalFunction | None:
        return self._functions.get(name) or self._functions.get(name.rsplit(":", 1)[-1])

    def invoke(
        self, name: str, body: bytes | str | None, response_headers: dict[str, str], *, refuse_unknown: bool = False
    ) -> bytes | None:
        function = self._find(name)
        if function is None:
            if refuse_unknown:
                raise LambdaInvokeRefused("NO_RESOURCE", f"Function not found: {name}")
            return None
        with self._lock:
            if self.throttle.get(function.name, 0) > 0:
                self.throttle[function.name] -= 1
                raise LambdaInvokeRefused("THROTTLING", "Rate Exceeded.")
        with self._lock:
            self.invocations[function.name] = self.invocations.get(function.name, 0) + 1
        event = json.loads(body) if body else {}
        _running.function = function.name
        try:
            result = self._handler_for(function)(event, LocalLambdaContext(function))
        except Exception as exc:
            response_headers["x-amz-function-error"] = "Unhandled"
            error = {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_tb(exc.__traceback__)[-3:],
            }
            return json.dumps(error).encode()
        finally:
            _running.function = None
        return json.dumps(result).encode()


_installed: dict[str, Any] = {}


def install(dispatcher: LambdaDispatcher, time_scale: float) -> None:
    """Switch moto to run our handlers and ASL with a time scale. Process-wide: one local stack at a time."""
    if time_scale <= 0:
        raise ValueError("time_scale must be > 0")
    default_user_config["stepfunctions"]["execute_state_machine"] = True
    default_user_config["lambda"]["use_docker"] = False

    def invoke(
        self: LambdaSimpleBackend,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: Any,
    ) -> bytes | None:
        if not dispatcher.knows(function_name):
            # Let moto raise its own ResourceNotFoundException, as Lambda does for an unknown function.
            self.get_function(function_name, qualifier)
        return dispatcher.invoke(function_name, body, response_headers)

    def wait_interval(self: WaitFunction, env: Environment, wait_seconds: int) -> None:
        # The original re-enters on early wake-ups by whole seconds; a scaled wait is just one wait.
        if wait_seconds > 0:
            env.program_state_event.wait(wait_seconds * time_scale)

    if not _installed:
        _installed.update(
            invoke=LambdaSimpleBackend.invoke,
            wait=WaitFunction._wait_interval,
            retrier_time=retrier_decl.time,
            execute_threading=execute_state.threading,
        )
    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
    WaitFunction._wait_interval = wait_interval  # type: ignore[method-assign]
    retrier_decl.time = _ScaledTime(time_scale)  # type: ignore[assignment]
    # moto waits for a task with ``threading.Event().wait(TimeoutSeconds)``; only that wait is scaled.
    execute_state.threading = _TaskTimeoutThreading()  # type: ignore[assignment]


def install_event_targets(deliver: Callable[[str, dict[str, Any], dict[str, Any]], None] | None) -> None:
    """Route EventBridge rules' Lambda targets to ``deliver(rule_arn, target, event)``; None restores moto."""
    from moto.events.models import Rule

    original = _installed.setdefault("send_to_targets", Rule.send_to_targets)
    if deliver is None:
        Rule.send_to_targets = original  # type: ignore[method-assign]
        return

    def send_to_targets(self: Rule, original_event: Any, transform_input: bool = True) -> None:
        if not self.event_pattern.matches_event(original_event):
            return
        lambda_targets = [t for t in self.targets if ":lambda:" in str(t.get("Arn", ""))]
        for target in lambda_targets:
            deliver(self.arn, target, original_event)
        others = [t for t in self.targets if t not in lambda_targets]
        if others:
            saved = self.targets
            self.targets = others
            try:
                original(self, original_event, transform_input)
            finally:
                self.targets = saved

    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]


def uninstall() -> None:
    if not _installed:
        return
    if "send_to_targets" in _installed:
        install_event_targets(None)
    LambdaSimpleBackend.invoke = _installed["invoke"]  # type: ignore[method-assign]
    WaitFunction._wait_interval = _installed["wait"]  # type: ignore[method-assign]
    retrier_decl.time = _installed["retrier_time"]
    execute_state.threading = _installed["execute_threading"]
    _installed.clear()
    set_task_timeout_scale(1.0)


_task_timeout_scale = 1.0


def set_task_timeout_scale(scale: float) -> float:
    """Scale task ``TimeoutSeconds`` from now on (1.0: as written); returns the previous scale."""
    global _task_timeout_scale
    if not 0 < scale <= 1:
        raise ValueError("task timeout scale must be in (0, 1]")
    previous, _task_timeout_scale = _task_timeout_scale, scale
    return previous


def task_timeout_scale() -> float:
    return _task_timeout_scale


class _ScaledEvent(threading.Event):
    def wait(self, timeout: float | None = None) -> bool:
        return super().wait(None if timeout is None else timeout * _task_timeout_scale)


class _TaskTimeoutThreading:
    """Stands in for ``threading`` inside moto's execute_state: its Events wait a scaled task timeout."""

    Event = _ScaledEvent

    def __getattr__(self, name: str) -> Any:
        return getattr(threading, name)


class _ScaledTime:
    """Stands in for the ``time`` module inside moto's retrier: only ``sleep`` is scaled."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds * self.scale)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def environment_union(functions: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """All functions run in one process and share ``os.environ``: their variables must agree.

    Returns the union, or raises if two functions set one variable to different values (then the local stack
    would silently run one of them with the other's configuration).
    """
    union: dict[str, str] = {}
    owners: dict[str, str] = {}
    for name, env in functions.items():
        for key, value in env.items():
            if key in union and union[key] != value:
                raise ValueError(
                    f"{name} and {owners[key]} set {key} differently; the local stack shares one environment"
                )
            union[key] = value
            owners.setdefault(key, name)
    return union
