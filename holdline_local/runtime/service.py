"""The local Lambda service: functions run in execution environments of their own (worker processes),
reused while warm, started when all are busy, capped by concurrency, stopped at their Timeout.

What it models, each from AWS's documentation:

- **Concurrency** ("Lambda function scaling" and "Configuring reserved concurrency",
  https://docs.aws.amazon.com/lambda/latest/dg/lambda-concurrency.html): every in-flight invocation holds one
  environment. A function with ``ReservedConcurrentExecutions`` can never have more in flight; the others
  share the account's limit less all reservations. Beyond either, Invoke is refused with
  ``TooManyRequestsException`` (HTTP 429, ``Reason`` ``ReservedFunctionConcurrentInvocationLimitExceeded`` or
  ``ConcurrentInvocationLimitExceeded``), which Step Functions reports as ``Lambda.TooManyRequestsException``.
- **Timeout** ("Configure Lambda function timeout", https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html;
  "Troubleshoot invocation issues", https://docs.aws.amazon.com/lambda/latest/dg/troubleshooting-invocation.html):
  an invocation that outlives the function's Timeout is stopped, its environment discarded, and Invoke
  answers ``FunctionError: Unhandled`` with ``errorType`` ``Sandbox.Timedout`` and the message
  "RequestId: ... Error: Task timed out after N.00 seconds". Step Functions matches that error by the
  ``errorType`` (older runtimes left it out, which Step Functions reports as ``Lambda.Unknown``; "Handle
  Lambda service exceptions", https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html).
- **Errors**: what the Python runtime posts for an unhandled exception (``errorType`` = the class name,
  ``errorMessage``, ``stackTrace``), answered with ``FunctionError: Unhandled``.
- **Init**: measured and logged as REPORT's ``Init Duration``; not counted against the Timeout (on-demand
  environments, "Lambda execution environment lifecycle").

Local resource governor (not an AWS behaviour, and never kinder than AWS): a function has at most
``max_environments`` environments on this machine; when all are busy an invocation waits for one instead
of starting another process. The wait only delays: a caller's own timeout (a Step Functions task's
TimeoutSeconds, Connect's 8 s) still counts it.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from holdline_local.runtime.api import Invocation
from holdline_local.runtime.environment import ExecutionEnvironment, InitFailed
from holdline_local.runtime.variables import environment_variables

#: "Invocation payload (request and response): 6 MB each for synchronous" (Lambda quotas).
MAX_SYNC_REQUEST_BYTES = 6_291_456
#: AWS's default concurrency quota per account and Region (Lambda quotas).
DEFAULT_ACCOUNT_CONCURRENCY = 1000
#: AWS stops an Init phase at 10 s. Locally every environment shares this machine's cores, so Init gets
#: more room; it is measured and reported, never hidden.
INIT_LIMIT_SECONDS = 30.0


class Throttled(Exception):
    """Invoke refused at a concurrency limit (Lambda's TooManyRequestsException)."""

    def __init__(self, reason: str) -> None:
        super().__init__("Rate Exceeded.")
        self.reason = reason


class InvokeRefused(Exception):
    """A test stand-in for the Lambda service refusing the Invoke call itself (before any environment)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class FunctionConfig:
    """What an environment is built from. A change to anything but the reserved concurrency makes new
    environments (as a configuration update does on AWS)."""

    name: str
    arn: str
    handler: str
    task_root: Path
    timeout: int
    memory_mb: int
    variables: tuple[tuple[str, str], ...]
    role_arn: str | None = None
    reserved_concurrency: int | None = None
    #: TracingConfig.Mode: ``Active`` functions are traced when the runtime has an X-Ray daemon.
    tracing_mode: str = "PassThrough"

    @property
    def environment_key(self) -> tuple[object, ...]:
        return (
            self.handler,
            self.task_root,
            self.timeout,
            self.memory_mb,
            self.variables,
            self.role_arn,
            self.tracing_mode,
        )


@dataclass(frozen=True)
class InvokeResult:
    request_id: str
    payload: bytes
    function_error: str | None
    error_type: str | None
    outcome: str  # ok | error | timeout | crash | init_error
    duration_ms: float
    init_duration_ms: float | None
    environment: str
    log_tail: str = ""

    def payload_json(self) -> object:
        return json.loads(self.payload or b"null")


@dataclass(frozen=True)
class LogLine:
    function: str
    environment: str
    request_id: str
    text: str
    at: float


@dataclass
class _Slot:
    key: tuple[object, ...]
    busy: bool = True
    environment: ExecutionEnvironment | None = None
    init_failure: InitFailed | None = None


@dataclass
class FunctionStats:
    invocations: int = 0
    errors: int = 0
    timeouts: int = 0
    throttles: int = 0
    cold_starts: int = 0
    init_ms: list[float] = field(default_factory=list)
    durations_ms: list[float] = field(default_factory=list)


Credentials = Callable[[str | None], Mapping[str, str]]


class LambdaRuntime:
    def __init__(
        self,
        *,
        python: Path,
        region: str,
        credentials: Credentials,
        local_variables: Mapping[str, str],
        timeout_scale: float = 1.0,
        unscaled: Iterable[str] = (),
        account_concurrency: int = DEFAULT_ACCOUNT_CONCURRENCY,
        max_environments: int = 8,
        init_limit_seconds: float = INIT_LIMIT_SECONDS,
    ) -> None:
        if not python.exists():
            raise FileNotFoundError(
                f"{python} does not exist: the functions' own virtual environment is made by `make install`"
            )
        self.python = python
        self.region = region
        self._credentials = credentials
        self._local_variables = dict(local_variables)
        self.timeout_scale = timeout_scale
        #: Functions whose Timeout the scale leaves as written: those Connect invokes. Connect's block limits are
        #: not scaled (the flow simulator runs them as written) and these functions' budgets are tied to them
        #: (CONNECT_TIMEOUT_SECONDS, holdline/connect.py): scaled, a 4 s function would get 0.4 s while Connect
        #: still waits 4 s, and not even one AWS attempt would fit its budget. The scale is for the saga's time.
        self.unscaled = frozenset(unscaled)
        self.account_concurrency = account_concurrency
        self.max_environments = max_environments
        self.init_limit_seconds = init_limit_seconds
        self._lock = threading.Condition()
        self._slots: dict[str, list[_Slot]] = {}
        self._active: Counter[str] = Counter()
        self._reserved: dict[str, int] = {}
        self._logs: dict[str, deque[LogLine]] = {}
        self._request_lines: dict[str, list[str]] = {}
        self.stats: dict[str, FunctionStats] = {}
        self._refusals: dict[str, list[InvokeRefused]] = {}
        self._retired_cpu = 0.0
        self._stopped = False
        #: Also hand every log line to this (CloudWatch Logs for ``holdline local up``).
        self.log_sink: Callable[[LogLine], None] | None = None
        #: host:port of an X-Ray daemon (:class:`holdline_local.xray.XRayDaemon`), or None: then no function is
        #: traced (POWERTOOLS_TRACE_DISABLED, a local-only variable) and trace headers say Sampled=0.
        self.xray_daemon: str | None = None

    # ---- invoking ------------------------------------------------------------------------------------------
    def invoke(
        self, config: FunctionConfig, payload: bytes, *, trace_id: str = "", client_context: str | None = None
    ) -> InvokeResult:
        """A synchronous invocation (RequestResponse). Raises :class:`Throttled` at a concurrency limit."""
        self.check_refusal(config.name)
        if len(payload) > MAX_SYNC_REQUEST_BYTES:
            raise InvokeRefused("RequestTooLargeException", "Request must be smaller than 6291456 bytes")
        self._admit(config)
        try:
            slot, cold = self._acquire(config)
            environment = slot.environment
            if environment is None:  # Init failed
                return self._init_failure(config, slot)
            return self._run(config, slot, environment, cold, payload, trace_id, client_context)
        finally:
            with self._lock:
                self._active[config.name] -= 1
                self._lock.notify_all()

    def check_refusal(self, function_name: str) -> None:
        with self._lock:
            planned = self._refusals.get(function_name)
            if planned:
                raise planned.pop(0)

    def refuse(self, function_name: str, code: str, times: int, message: str = "Rate Exceeded.") -> None:
        """Tests: the Lambda service refuses the next ``times`` Invoke calls of a function outright."""
        with self._lock:
            self._refusals.setdefault(function_name, []).extend(InvokeRefused(code, message) for _ in range(times))

    def clear_refusals(self, function_name: str) -> None:
        with self._lock:
            self._refusals.pop(function_name, None)

    def _admit(self, config: FunctionConfig) -> None:
        with self._lock:
            stats = self.stats.setdefault(config.name, FunctionStats())
            if config.reserved_concurrency is None:
                self._reserved.pop(config.name, None)
            else:
                self._reserved[config.name] = config.reserved_concurrency
            if config.reserved_concurrency is not None:
                if self._active[config.name] >= config.reserved_concurrency:
                    stats.throttles += 1
                    raise Throttled("ReservedFunctionConcurrentInvocationLimitExceeded")
            else:
                unreserved_pool = self.account_concurrency - sum(self._reserved.values())
                in_pool = sum(n for name, n in self._active.items() if name not in self._reserved)
                if in_pool >= unreserved_pool:
                    stats.throttles += 1
                    raise Throttled("ConcurrentInvocationLimitExceeded")
            self._active[config.name] += 1

    def _acquire(self, config: FunctionConfig) -> tuple[_Slot, bool]:
        """A warm environment for this configuration, a new one (Init), or a wait for one."""
        stale: list[ExecutionEnvironment] = []
        with self._lock:
            slots = self._slots.setdefault(config.name, [])
            key = self._environment_key(config)
            while True:
                for slot in [s for s in slots if not s.busy and (s.key != key or not _alive(s))]:
                    slots.remove(slot)
                    if slot.environment is not None:
                        stale.append(slot.environment)
                warm = next((s for s in slots if not s.busy), None)
                if warm is not None:
                    warm.busy = True
                    break
                if len(slots) < self.max_environments:
                    warm = _Slot(key)
                    slots.append(warm)
                    break
                self._lock.wait()
        for environment in stale:
            self._retire(environment)
        if warm.environment is not None:
            return warm, False
        name = config.name

        def log(environment_id: str, request_id: str, text: str) -> None:
            self.log(name, environment_id, request_id, text)

        environment = ExecutionEnvironment(
            name, config.handler, config.task_root, self.python, self._variables_for(config), log
        )
        warm.environment = environment
        try:
            environment.start(self.init_limit_seconds)
        except InitFailed as failure:
            warm.environment = None
            warm.init_failure = failure
        return warm, True

    def _traced(self, config: FunctionConfig) -> bool:
        return self.xray_daemon is not None and config.tracing_mode == "Active"

    def _environment_key(self, config: FunctionConfig) -> tuple[object, ...]:
        """An environment serves one configuration, and was started traced or not (a daemon came or went)."""
        return (*config.environment_key, self.xray_daemon if self._traced(config) else None)

    def _variables_for(self, config: FunctionConfig) -> dict[str, str]:
        local = dict(self._local_variables)
        tracing: dict[str, str] = {}
        if self._traced(config):
            assert self.xray_daemon is not None
            # What Lambda sets for active tracing; the local-only switch that turns Powertools' Tracer off goes.
            local.pop("POWERTOOLS_TRACE_DISABLED", None)
            tracing = {"AWS_XRAY_DAEMON_ADDRESS": self.xray_daemon, "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR"}
        return environment_variables(
            function_name=config.name,
            handler=config.handler,
            memory_mb=config.memory_mb,
            region=self.region,
            task_root=config.task_root,
            python=self.python,
            configured=dict(config.variables),
            credentials=self._credentials(config.role_arn),
            local=local,
            tracing=tracing,
            log_stream=f"{time.strftime('%Y/%m/%d')}/[$LATEST]{secrets.token_hex(16)}",
        )

    def _run(
        self,
        config: FunctionConfig,
        slot: _Slot,
        environment: ExecutionEnvironment,
        cold: bool,
        payload: bytes,
        trace_id: str,
        client_context: str | None,
    ) -> InvokeResult:
        request_id = str(uuid.uuid4())
        timeout = config.timeout * (1.0 if config.name in self.unscaled else self.timeout_scale)
        invocation = Invocation(
            request_id=request_id,
            payload=payload,
            deadline_ms=int((time.time() + timeout) * 1000),
            function_arn=config.arn,
            trace_id=trace_id or _trace_id(sampled=self._traced(config)),
            client_context=client_context,
        )
        self._request_lines[request_id] = []
        self.log(config.name, environment.id, request_id, f"START RequestId: {request_id} Version: $LATEST")
        outcome = environment.run(invocation, timeout)
        body, function_error, error_type = outcome.body, None, None
        if outcome.kind == "timeout":
            message = f"RequestId: {request_id} Error: Task timed out after {config.timeout:.2f} seconds"
            body = json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": message}).encode()
            self.log(
                config.name,
                environment.id,
                request_id,
                f"{_now()} {request_id} Task timed out after {config.timeout:.2f} seconds",
            )
        if outcome.kind != "ok":
            function_error = "Unhandled"
            error_type = _error_type(body)
        status = {"timeout": "\tStatus: timeout", "crash": "\tStatus: error"}.get(outcome.kind, "")
        init = f"\tInit Duration: {environment.init_duration_ms:.2f} ms" if cold else ""
        self.log(config.name, environment.id, request_id, f"END RequestId: {request_id}")
        self.log(
            config.name,
            environment.id,
            request_id,
            f"REPORT RequestId: {request_id}\tDuration: {outcome.duration_ms:.2f} ms\t"
            f"Billed Duration: {math.ceil(outcome.duration_ms)} ms\tMemory Size: {config.memory_mb} MB\t"
            f"Max Memory Used: {environment.max_memory_mb()} MB{init}{status}",
        )
        with self._lock:
            stats = self.stats[config.name]
            stats.invocations += 1
            stats.errors += function_error is not None
            stats.timeouts += outcome.kind == "timeout"
            stats.durations_ms.append(outcome.duration_ms)
            if cold:
                stats.cold_starts += 1
                stats.init_ms.append(environment.init_duration_ms)
            if environment.alive:
                slot.busy = False
            else:
                self._slots[config.name].remove(slot)
            self._lock.notify_all()
        if not environment.alive:
            self._retire(environment)
        lines = self._request_lines.pop(request_id, [])
        return InvokeResult(
            request_id=request_id,
            payload=body,
            function_error=function_error,
            error_type=error_type,
            outcome=outcome.kind,
            duration_ms=outcome.duration_ms,
            init_duration_ms=environment.init_duration_ms if cold else None,
            environment=environment.id,
            log_tail=base64.b64encode("\n".join(lines).encode()[-4096:]).decode(),
        )

    def _init_failure(self, config: FunctionConfig, slot: _Slot) -> InvokeResult:
        failure = slot.init_failure
        assert failure is not None
        with self._lock:
            self._slots[config.name].remove(slot)
            stats = self.stats[config.name]
            stats.invocations += 1
            stats.errors += 1
            self._lock.notify_all()
        request_id = str(uuid.uuid4())
        body = failure.document or json.dumps({"errorType": failure.error_type, "errorMessage": str(failure)}).encode()
        self.log(config.name, "", request_id, f"INIT_REPORT Phase: init Status: error Error Type: {_error_type(body)}")
        return InvokeResult(request_id, body, "Unhandled", _error_type(body), "init_error", 0.0, None, "")

    # ---- logs, measurements, lifecycle ---------------------------------------------------------------------
    def log(self, function: str, environment: str, request_id: str, text: str) -> None:
        line = LogLine(function, environment, request_id, text, time.time())
        with self._lock:
            self._logs.setdefault(function, deque(maxlen=50_000)).append(line)
        if request_id in self._request_lines:
            self._request_lines[request_id].append(text)
        if self.log_sink is not None:
            self.log_sink(line)

    def logs(self, function: str) -> list[LogLine]:
        """The function's log (what CloudWatch Logs would hold): platform lines and everything it printed."""
        with self._lock:
            return list(self._logs.get(function, ()))

    def log_text(self, function: str | None = None) -> str:
        with self._lock:
            names = [function] if function else list(self._logs)
            return "\n".join(line.text for name in names for line in self._logs.get(name, ()))

    def environments(self, function: str) -> list[str]:
        """The ids of the function's live environments (warm or busy)."""
        with self._lock:
            return [s.environment.id for s in self._slots.get(function, []) if s.environment is not None]

    def cpu_seconds(self) -> float:
        """CPU used by every environment so far (live ones read from /proc, retired ones remembered)."""
        with self._lock:
            live = [s.environment for slots in self._slots.values() for s in slots if s.environment is not None]
        return self._retired_cpu + sum(e.cpu_seconds() for e in live)

    def _retire(self, environment: ExecutionEnvironment) -> None:
        cpu = environment.cpu_seconds()
        environment.kill(wait=False)
        with self._lock:
            self._retired_cpu += cpu

    def discard_environments(self, function: str | None = None) -> None:
        """Retire idle environments (all, or one function's): the next invocation is a cold start."""
        with self._lock:
            victims = []
            for name, slots in self._slots.items():
                if function is None or name == function:
                    for slot in [s for s in slots if not s.busy]:
                        slots.remove(slot)
                        if slot.environment is not None:
                            victims.append(slot.environment)
        for environment in victims:
            self._retire(environment)

    def stop(self) -> None:
        self._stopped = True
        with self._lock:
            everything = [s.environment for slots in self._slots.values() for s in slots if s.environment]
            self._slots.clear()
        for environment in everything:
            self._retire(environment)

    @contextmanager
    def scaled_timeouts(self, scale: float) -> Iterator[None]:
        previous, self.timeout_scale = self.timeout_scale, scale
        try:
            yield
        finally:
            self.timeout_scale = previous


def _alive(slot: _Slot) -> bool:
    return slot.environment is not None and slot.environment.alive


def _error_type(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return str(document.get("errorType")) if isinstance(document, dict) and document.get("errorType") else None


def _trace_id(*, sampled: bool) -> str:
    """An X-Ray trace header as Lambda passes one: sampled only when the runtime has an X-Ray daemon (locally
    every traced invocation is sampled; AWS samples by rule)."""
    flag = 1 if sampled else 0
    return f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled={flag}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
