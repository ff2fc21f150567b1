"""Everything Holdline changes in moto, in one place. Written for and tested against the moto pinned in
pyproject.toml (tests/functional/test_moto_adapter.py): a moto upgrade that moves these hooks fails there.

1. **Lambda runs in the local runtime.** moto's no-Docker Lambda backend echoes its input; ``Invoke`` is
   routed to :mod:`holdline_local.runtime` instead: each function in execution environments of its own
   (worker processes), built from moto's own record of the function (handler, Timeout, MemorySize,
   variables, role, reserved concurrency), so what the Lambda API says is what runs. Synchronous invokes
   answer as Lambda does (``FunctionError: Unhandled`` with the runtime's error document; 429
   ``TooManyRequestsException`` at a concurrency limit); ``InvocationType=Event`` goes to Lambda's
   asynchronous queue (:mod:`holdline_local.runtime.async_invoke`).
2. **Time runs faster.** moto's Step Functions executor really sleeps in ``Wait`` states and between
   retries; a time scale multiplies those sleeps so tests and the demo run fast while the ASL stays exactly
   what is deployed. Timeouts have a scale of their own (:func:`set_timeout_scale`, default 1.0) that
   applies to task ``TimeoutSeconds`` and to functions' ``Timeout`` alike, so their order is AWS's.
3. **The executor calls AWS with its state machine's role** (moto's own client uses fixed fake keys), one
   client per role and service reused across Task states (moto makes a new boto3 client per Task state).
4. **A definition is parsed once**, not on every execution.
5. **Step Functions Execution Status Change** events, which AWS puts on the default bus for every Standard
   execution that starts or ends ("Automating Step Functions event delivery with EventBridge",
   https://docs.aws.amazon.com/step-functions/latest/dg/eventbridge-integration.html), are put locally too.
6. EventBridge rules' Lambda targets, which moto does not deliver, go to the local stack's emulation of
   EventBridge's asynchronous delivery (holdline_local/event_targets.py).
7. **A Parallel or Map whose branch fails with a ``States.*`` error** (a task's ``States.Timeout``, say) fails
   with that error, as on AWS, so its Catch sees it; moto rebuilds the branch's error as a custom error name,
   which refuses the ``States.`` prefix, and the execution dies of a ValueError instead.
8. **Errors no Catch or Retry may handle.** A ``States.Runtime`` error (a path that does not resolve in
   Parameters or ResultSelector, a ResultPath moto cannot apply; moto already fails InputPath/OutputPath
   outside any Catch) "isn't
   retriable, and will always cause the execution to fail", and ``States.ALL`` "can't catch the
   States.DataLimitExceeded terminal error type and runtime error types" (Step Functions developer guide,
   "Handling errors in Step Functions workflows",
   https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html). moto's ``ErrorEquals``
   matched both with ``States.ALL``, and its Choice took ``Default`` on a ``Variable`` that does not resolve,
   which AWS fails with ``States.Runtime`` (only ``IsPresent`` may ask about a missing path).
9. **SQS refuses an empty message attribute value** ("Name, type, value and the message body must not be empty
   or null", SQS API reference, MessageAttributeValue,
   https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_MessageAttributeValue.html):
   ``InvalidParameterValue``. moto refused only a null one, so a dead letter whose ERROR_MESSAGE was a timeout's
   empty Cause was sent locally and lost on AWS.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any

from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.config import default_user_config
from moto.core.exceptions import JsonRESTError
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.exec import execute_state
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.parser.asl.eval.environment import Environment

from holdline_local.runtime import FunctionConfig, InvokeRefused, LambdaRuntime, Throttled
from holdline_local.runtime.async_invoke import AsyncInvoker


class TooManyRequestsException(JsonRESTError):
    """Lambda's 429 at a concurrency limit ("Invoke" API reference, Errors)."""

    code = 429

    def __init__(self, reason: str) -> None:
        super().__init__("TooManyRequestsException", "Rate Exceeded.")
        self.description = json.dumps(
            {"__type": "TooManyRequestsException", "message": "Rate Exceeded.", "Reason": reason, "Type": "User"}
        )


class ServiceRefusal(JsonRESTError):
    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(code, message)
        self.code = status


# ---- 1. Lambda -----------------------------------------------------------------------------------------
class LambdaBridge:
    """moto's record of a function -> the runtime's FunctionConfig; Invoke -> the runtime."""

    def __init__(self, runtime: LambdaRuntime, async_invoker: AsyncInvoker | None = None) -> None:
        self.runtime = runtime
        self.async_invoker = async_invoker
        self._code_dirs: dict[str, Path] = {}
        self._extracted: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._scratch = Path(tempfile.mkdtemp(prefix="holdline-lambda-code-"))

    def serve_code_from(self, function_name: str, directory: Path) -> None:
        """A function of the template runs its CodeUri directory (edits show on the next cold start)."""
        self._code_dirs[function_name] = directory

    def config_for(self, function: Any) -> FunctionConfig:
        return FunctionConfig(
            name=function.function_name,
            arn=function.function_arn,
            handler=function.handler,
            task_root=self._task_root(function),
            timeout=int(function.timeout),
            memory_mb=int(function.memory_size),
            variables=tuple(sorted((str(k), str(v)) for k, v in (function.environment_vars or {}).items())),
            role_arn=function.role,
            reserved_concurrency=None if function.reserved_concurrency is None else int(function.reserved_concurrency),
            tracing_mode=str((getattr(function, "tracing_config", None) or {}).get("Mode", "PassThrough")),
        )

    def _task_root(self, function: Any) -> Path:
        if function.function_name in self._code_dirs:
            return self._code_dirs[function.function_name]
        digest = str(function.code_sha_256)
        with self._lock:
            if digest not in self._extracted:
                target = self._scratch / digest.replace("/", "_").replace("+", "-")[:40]
                with zipfile.ZipFile(BytesIO(function.code_bytes)) as archive:
                    archive.extractall(target)
                self._extracted[digest] = target
            return self._extracted[digest]

    def invoke(self, function: Any, body: Any, headers: Mapping[str, str], response_headers: dict[str, str]) -> bytes:
        payload = body.encode() if isinstance(body, str) else (body or b"")
        config = self.config_for(function)
        invocation_type = headers.get("X-Amz-Invocation-Type", "RequestResponse")
        try:
            if invocation_type == "DryRun":
                return b""
            if invocation_type == "Event":
                self.runtime.check_refusal(config.name)
                if self.async_invoker is None:
                    raise ServiceRefusal("ServiceException", "no asynchronous queue in this local stack", 500)
                self.async_invoker.submit(config.name, payload)
                return b""
            result = self.runtime.invoke(config, payload, client_context=headers.get("X-Amz-Client-Context"))
        except Throttled as throttled:
            raise TooManyRequestsException(throttled.reason) from None
        except InvokeRefused as refused:
            status = 413 if refused.code == "RequestTooLargeException" else 429
            raise ServiceRefusal(refused.code, str(refused), status) from None
        if result.function_error:
            response_headers["x-amz-function-error"] = result.function_error
        if headers.get("X-Amz-Log-Type") == "Tail":
            response_headers["x-amz-log-result"] = result.log_tail
        response_headers["x-amz-executed-version"] = "$LATEST"
        return result.payload


# ---- 3. the executor's clients ----------------------------------------------------------------------------
class ExecutorClients:
    """Replaces moto's ``boto_client_for``: one client per (region, service, role), with the role's
    credentials, against the local endpoint."""

    def __init__(self, endpoint: str, credentials: Callable[[str | None], Mapping[str, str]] | None) -> None:
        self._endpoint = endpoint
        self._credentials = credentials
        self._clients: dict[tuple[str, str, str | None], Any] = {}
        self._lock = threading.Lock()

    def __call__(self, region: str, service: str, state_credentials: Any = None) -> Any:
        import boto3
        from botocore.config import Config
        from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds

        role = getattr(state_credentials, "role_arn", None)
        key = (region, service, role)
        with self._lock:
            if key not in self._clients:
                if self._credentials is not None and role:
                    found = self._credentials(role)
                    keys = {
                        "aws_access_key_id": found["AWS_ACCESS_KEY_ID"],
                        "aws_secret_access_key": found["AWS_SECRET_ACCESS_KEY"],
                        "aws_session_token": found.get("AWS_SESSION_TOKEN"),
                    }
                else:
                    keys = {"aws_access_key_id": "ak", "aws_secret_access_key": "sk"}
                self._clients[key] = boto3.session.Session().client(
                    service,
                    region_name=region,
                    endpoint_url=self._endpoint,
                    config=Config(
                        parameter_validation=False,
                        retries={"max_attempts": 0, "total_max_attempts": 1},
                        connect_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                        read_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                        max_pool_connections=64,
                    ),
                    **keys,
                )
            return self._clients[key]


def _patch_executor_clients(factory: Callable[..., Any] | None) -> None:
    import sys

    import moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_factory  # noqa: F401 - loads them all
    from moto.stepfunctions.parser.asl.utils import boto_client

    original = _installed.setdefault("boto_client_for", boto_client.boto_client_for)
    replacement = factory or original
    for name, module in list(sys.modules.items()):
        if name.startswith("moto.stepfunctions.parser") and getattr(module, "boto_client_for", None) in {
            original,
            _installed.get("boto_client_factory"),
        }:
            module.boto_client_for = replacement  # type: ignore[attr-defined]
    _installed["boto_client_factory"] = replacement


@contextlib.contextmanager
def wrapped_executor_clients(wrap: Callable[[Any, str], Any]) -> Iterator[None]:
    """Tests: while inside, each client the engine's service integrations get (``dynamodb:updateItem`` and the
    like) is ``wrap(client, service)``: a fault can be put in front of the state machine's own calls."""
    inner = _installed["boto_client_factory"]

    def factory(region: str, service: str, state_credentials: Any = None) -> Any:
        return wrap(inner(region, service, state_credentials), service)

    _patch_executor_clients(factory)
    try:
        yield
    finally:
        _patch_executor_clients(inner)


# ---- 4. parse once ---------------------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _parsed(definition: str) -> Any:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    return AmazonStateLanguageParser.parse(definition)[0]


def _entrypoint(self: Any) -> Any:
    return _parsed(self._evaluation_details.state_machine_details.definition)


# ---- 5. status change events ---------------------------------------------------------------------------
def _epoch_ms(value: Any) -> int | None:
    return int(value.timestamp() * 1000) if value is not None else None


def put_status_change_event(execution: Any, status: str | None = None) -> None:
    """What AWS puts on the default bus when a Standard execution's status changes (best effort there and
    here: a failure to put it never touches the execution). ``status`` names the change (RUNNING at the
    start: by the time the event is built a short execution may already have ended)."""
    from moto.events.models import events_backends
    from moto.stepfunctions.parser.api import StateMachineType

    if execution.sm_type != StateMachineType.STANDARD:
        return  # "Express workflows do not emit" status change events
    if status is None:
        current = execution.exec_status
        status = str(current.value if hasattr(current, "value") else current)
    detail = {
        "executionArn": execution.exec_arn,
        "stateMachineArn": execution.state_machine.arn,
        "name": execution.name,
        "status": status,
        "startDate": _epoch_ms(execution.start_date),
        "stopDate": _epoch_ms(execution.stop_date) if status != "RUNNING" else None,
        "input": json.dumps(execution.input_data) if execution.input_data is not None else None,
        "output": json.dumps(execution.output) if status == "SUCCEEDED" and execution.output is not None else None,
        "inputDetails": {"included": True},
        "outputDetails": {"included": status == "SUCCEEDED"},
        "error": execution.error if status == "FAILED" else None,
        "cause": execution.cause if status == "FAILED" else None,
    }
    with contextlib.suppress(Exception):  # best effort, as on AWS: never touches the execution
        events_backends[execution.account_id][execution.region_name].put_events(
            [
                {
                    "Source": "aws.states",
                    "DetailType": "Step Functions Execution Status Change",
                    "Detail": json.dumps(detail),
                    "Resources": [execution.exec_arn],
                    "EventBusName": "default",
                }
            ]
        )


# ---- 7. branch errors ------------------------------------------------------------------------------------
def _branch_error_name(error_name: str | None) -> Any:
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName

    if error_name is not None and error_name.startswith("States."):
        return StatesErrorName.from_name(error_name)
    return CustomErrorName(error_name)


def _branch_modules() -> list[Any]:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import iteration_worker
    from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import branches_decl

    return [branches_decl, iteration_worker]


# ---- 8. errors no Catch or Retry may handle ------------------------------------------------------------------
def _strict_error_equals(original: Callable[[Any, Environment], None]) -> Callable[[Any, Environment], None]:
    """``ErrorEqualsDecl._eval_body``: pops the error name, pushes whether this Retrier/Catcher takes it."""
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )

    def named(self: Any, typ: Any) -> bool:
        return any(isinstance(n, StatesErrorName) and n.typ == typ for n in self.error_names)

    def _eval_body(self: Any, env: Environment) -> None:
        error_name = env.stack[-1]
        typ = error_name.typ if isinstance(error_name, StatesErrorName) else None
        # States.Runtime: no Retrier or Catcher at all, whatever it names ("will always cause the execution to
        # fail"). States.DataLimitExceeded: not States.ALL (the guide says no more than that: named, it matches).
        data_limit = StatesErrorNameType.StatesStatesDataLimitExceeded
        if typ == StatesErrorNameType.StatesRuntime or (typ == data_limit and not named(self, data_limit)):
            env.stack.pop()
            env.stack.append(False)
            return
        original(self, env)

    return _eval_body


def _strict_choice_variable(original: Callable[[Any, Environment], None]) -> Callable[[Any, Environment], None]:
    """``ComparisonVariable._eval_body``: a rule's Variable that does not resolve is States.Runtime unless the
    rule is ``IsPresent``. moto's Variable samples a missing path as ``NoSuchVariable`` and every operator but
    IsPresent (and the Is* type tests, false) answers false, so the Choice fell through to its Default."""
    from moto.stepfunctions.parser.asl.component.state.choice.comparison.comparison_operator_type import (
        ComparisonOperatorType,
    )
    from moto.stepfunctions.parser.asl.component.state.choice.comparison.variable import NoSuchVariable
    from moto.stepfunctions.parser.asl.utils.json_path import NoSuchJsonPathError

    def _eval_body(self: Any, env: Environment) -> None:
        if self.comparison_function.operator_type != ComparisonOperatorType.IsPresent:
            self.variable.eval(env)
            sampled = env.stack.pop()
            if isinstance(sampled, NoSuchVariable):
                # The Choice state turns this into States.Runtime, as it does for a missing ``...Path`` operand.
                raise NoSuchJsonPathError(self.variable.string_sampler.literal_value, env.states.get_input())
            env.stack.append(sampled)
            self.comparison_function.eval(env)
            return
        original(self, env)

    return _eval_body


def _strict_from_error(original: Callable[[Any, Environment, Exception], Any]) -> Callable[..., Any]:
    """An execution state's ``_from_error`` (its exception -> the error its Retry and Catch see). A path that
    does not resolve in Parameters, ResultSelector or ResultPath raises moto's NoSuchJsonPathError there, and
    each integration named it its own way: DynamoDB's made it ``DynamoDB.AmazonDynamoDBException`` (which our
    ReadRequest retried, on an input moto had emptied). It is ``States.Runtime``, whatever the integration."""
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
    from moto.stepfunctions.parser.asl.utils.json_path import NoSuchJsonPathError

    def _from_error(self: Any, env: Environment, ex: Exception) -> Any:
        if isinstance(ex, NoSuchJsonPathError):
            runtime = StatesErrorNameType.StatesRuntime.to_name()
            cause = (
                f"The JSONPath '{ex.json_path}' specified for the field '{env.next_field_name}' "
                f"could not be found in the input '{to_json_str(ex.data)}'"
            )
            return FailureEvent(
                env=env,
                error_name=StatesErrorName(typ=StatesErrorNameType.StatesRuntime),
                event_type=HistoryEventType.TaskFailed,
                # One key, as moto builds its own (its EventDetails TypedDict is declared total).
                event_details=EventDetails(  # type: ignore[typeddict-item]
                    taskFailedEventDetails=TaskFailedEventDetails(error=runtime, cause=cause)
                ),
            )
        return original(self, env, ex)

    return _from_error


def _execution_states() -> list[Any]:
    import moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_factory  # noqa: F401 - loads them all
    from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState

    found, pending = [], [ExecutionState]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return [cls for cls in found if "_from_error" in vars(cls)]


def _strictness_targets() -> list[tuple[Any, str, Callable[[Any], Any]]]:
    from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
    from moto.stepfunctions.parser.asl.component.state.choice.comparison.comparison_variable import (
        ComparisonVariable,
    )

    return [
        (ErrorEqualsDecl, "_eval_body", _strict_error_equals),
        (ComparisonVariable, "_eval_body", _strict_choice_variable),
        *((cls, "_from_error", _strict_from_error) for cls in _execution_states()),
    ]


def _install_strictness() -> None:
    for owner, attribute, make in _strictness_targets():
        original = _installed.setdefault(f"strict:{owner.__qualname__}:{owner.__module__}", vars(owner)[attribute])
        setattr(owner, attribute, make(original))


def _uninstall_strictness() -> None:
    for owner, attribute, _ in _strictness_targets():
        setattr(owner, attribute, _installed[f"strict:{owner.__qualname__}:{owner.__module__}"])


# ---- 9. SQS message attributes -------------------------------------------------------------------------------
def _strict_message_attributes(original: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    from moto.sqs.exceptions import MessageAttributesInvalid

    def validate_message_attributes(message_attributes: dict[str, Any]) -> None:
        original(message_attributes)  # moto's own checks first (a null value, an unknown type)
        for name, value in (message_attributes or {}).items():
            data_type = str(value.get("DataType") or "")
            field = "BinaryValue" if data_type.startswith("Binary") else "StringValue"
            if not value.get(field):
                raise MessageAttributesInvalid(
                    f"The message attribute '{name}' must contain non-empty message attribute value for message "
                    f"attribute type '{data_type}'."
                )

    return validate_message_attributes


def _install_sqs_strictness() -> None:
    from moto.sqs import responses

    original = _installed.setdefault("sqs_validate", responses.validate_message_attributes)
    responses.validate_message_attributes = _strict_message_attributes(original)  # type: ignore[assignment]


# ---- installing ----------------------------------------------------------------------------------------
_installed: dict[str, Any] = {}
_timeout_scale = 1.0


def install(
    bridge: LambdaBridge,
    time_scale: float,
    *,
    endpoint: str,
    credentials: Callable[[str | None], Mapping[str, str]] | None = None,
) -> None:
    """Switch moto to run functions in the local runtime and ASL with a time scale. Process-wide: one local
    stack at a time."""
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

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
        function = self.get_function(function_name, qualifier)  # moto's own ResourceNotFoundException
        return bridge.invoke(function, body, headers, response_headers)

    def wait_interval(self: WaitFunction, env: Environment, wait_seconds: int) -> None:
        # The original re-enters on early wake-ups by whole seconds; a scaled wait is just one wait.
        if wait_seconds > 0:
            env.program_state_event.wait(wait_seconds * time_scale)

    original_terminated = BaseExecutionWorkerCommunication.terminated
    original_start = Execution.start

    def terminated(self: BaseExecutionWorkerCommunication) -> None:
        original_terminated(self)
        put_status_change_event(self.execution)

    def start(self: Execution) -> None:
        original_start(self)
        put_status_change_event(self, "RUNNING")

    if not _installed:
        _installed.update(
            invoke=LambdaSimpleBackend.invoke,
            wait=WaitFunction._wait_interval,
            retrier_time=retrier_decl.time,
            execute_threading=execute_state.threading,
            terminated=original_terminated,
            start=original_start,
            entrypoint=ExecutionWorker._get_evaluation_entrypoint,
        )
    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
    WaitFunction._wait_interval = wait_interval  # type: ignore[method-assign]
    retrier_decl.time = _ScaledTime(time_scale)  # type: ignore[assignment]
    # moto waits for a task with ``threading.Event().wait(TimeoutSeconds)``; only that wait is scaled.
    execute_state.threading = _TaskTimeoutThreading()  # type: ignore[assignment]
    BaseExecutionWorkerCommunication.terminated = terminated  # type: ignore[method-assign]
    Execution.start = start  # type: ignore[method-assign]
    ExecutionWorker._get_evaluation_entrypoint = _entrypoint  # type: ignore[method-assign]
    _patch_executor_clients(ExecutorClients(endpoint, credentials))
    for module in _branch_modules():
        _installed.setdefault(f"error_name:{module.__name__}", module.CustomErrorName)
        module.CustomErrorName = _branch_error_name
    _install_strictness()
    _install_sqs_strictness()
    _installed["runtime"] = bridge.runtime


def install_event_targets(deliver: Callable[[str, dict[str, Any], dict[str, Any]], None] | None) -> None:
    """Route EventBridge rules' Lambda targets to ``deliver(rule_arn, target, event)``; None restores moto."""
    from moto.events.models import Rule

    original = _installed.setdefault("send_to_targets", Rule.send_to_targets)
    if deliver is None:
        Rule.send_to_targets = original  # type: ignore[method-assign]
        return

    def send_to_targets(self: Rule, original_event: Any, transform_input: bool = True) -> None:
        if self.state != "ENABLED":  # moto delivers for disabled rules too; AWS does not
            return
        scheduled = original_event.get("detail-type") == "Scheduled Event" and self.scheduled_expression
        # A rule with only a ScheduleExpression "self-triggers based on the given schedule" and matches no event
        # (EventBridge API reference, PutRule); moto's empty pattern matches every event, so the sweeper's
        # schedule rule fired on every status change and failure event put on the bus.
        pattern = self.event_pattern
        if not scheduled and (not pattern.get_pattern() or not pattern.matches_event(original_event)):
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
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    if not _installed:
        return
    if "send_to_targets" in _installed:
        install_event_targets(None)
    LambdaSimpleBackend.invoke = _installed["invoke"]  # type: ignore[method-assign]
    WaitFunction._wait_interval = _installed["wait"]  # type: ignore[method-assign]
    retrier_decl.time = _installed["retrier_time"]
    execute_state.threading = _installed["execute_threading"]
    BaseExecutionWorkerCommunication.terminated = _installed["terminated"]  # type: ignore[method-assign]
    Execution.start = _installed["start"]  # type: ignore[method-assign]
    ExecutionWorker._get_evaluation_entrypoint = _installed["entrypoint"]  # type: ignore[method-assign]
    _patch_executor_clients(None)
    for module in _branch_modules():
        module.CustomErrorName = _installed[f"error_name:{module.__name__}"]
    _uninstall_strictness()
    from moto.sqs import responses

    responses.validate_message_attributes = _installed["sqs_validate"]
    _installed.clear()
    set_timeout_scale(1.0)


# ---- 2. time ---------------------------------------------------------------------------------------------
def set_timeout_scale(scale: float) -> float:
    """Scale timeouts from now on: task ``TimeoutSeconds`` and functions' ``Timeout`` (1.0: as written);
    returns the previous scale. Keep it well above the handlers' real run time, or healthy work times out."""
    global _timeout_scale
    if not 0 < scale <= 1:
        raise ValueError("timeout scale must be in (0, 1]")
    previous, _timeout_scale = _timeout_scale, scale
    runtime = _installed.get("runtime")
    if runtime is not None:
        runtime.timeout_scale = scale
    return previous


def timeout_scale() -> float:
    return _timeout_scale


class _ScaledEvent(threading.Event):
    def wait(self, timeout: float | None = None) -> bool:
        return super().wait(None if timeout is None else timeout * _timeout_scale)


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
