"""The local Lambda runtime behaves like Lambda's execution environments, on the points where a kinder local
stack would hide the faults Holdline exists to survive: Timeout, isolation, concurrency, errors, async
retries, IAM, schedules and the events AWS sends. Each test deploys small functions through the Lambda API
(zip packages, as a user would against ``holdline local up``) next to the stack's own."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from holdline_local import moto_adapter
from holdline_local.runtime import variables
from holdline_local.stack import LocalStack
from tests.probes import TRUST, Deploy, function_arn, invoke, invoke_role, one_task, run_state_machine


# ---- Timeout -----------------------------------------------------------------------------------------------
def test_an_invocation_past_its_timeout_answers_sandbox_timedout_and_loses_its_environment(
    stack: LocalStack, deploy: Deploy
) -> None:
    name = deploy(timeout=1)
    first, _ = invoke(stack, name, {})
    started = time.monotonic()
    answer, error = invoke(stack, name, {"sleep": 5})
    elapsed = time.monotonic() - started
    assert error == "Unhandled"
    assert answer["errorType"] == "Sandbox.Timedout"
    assert answer["errorMessage"].endswith("Error: Task timed out after 1.00 seconds")
    assert 1.0 <= elapsed < 3.0, elapsed  # stopped at its Timeout, not when the handler would have finished
    after, error = invoke(stack, name, {})
    assert error is None
    assert after["pid"] != first["pid"] and after["invocations"] == 1  # a fresh environment: Init again
    assert stack.runtime is not None
    report = [line.text for line in stack.runtime.logs(name) if line.text.startswith("REPORT")]
    assert "Status: timeout" in report[1] and "Init Duration" in report[2]


def test_the_context_counts_down_from_the_timeout(stack: LocalStack, deploy: Deploy) -> None:
    answer, _ = invoke(stack, deploy(timeout=7), {})
    assert 6000 < answer["remainingMs"] <= 7000


def test_in_a_state_machine_a_function_timeout_fails_the_task_as_aws_reports_it(
    stack: LocalStack, deploy: Deploy
) -> None:
    """Function Timeout 1 s under a task TimeoutSeconds of 10: the task fails with the error AWS reports for
    a function timeout (``Sandbox.Timedout``), not ``States.Timeout``; a Retry that names it runs again."""
    name = deploy(timeout=1)
    sfn = stack.client("stepfunctions")
    definition = one_task(
        name,
        {"sleep": 3},
        TimeoutSeconds=10,
        Retry=[{"ErrorEquals": ["Sandbox.Timedout"], "IntervalSeconds": 1, "MaxAttempts": 1}],
    )
    execution = run_state_machine(stack, definition, invoke_role(stack, name))
    assert execution["status"] == "FAILED" and execution["error"] == "Sandbox.Timedout"
    events = sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
    assert sum(e["type"] == "TaskScheduled" for e in events) == 2  # the retry named the error and ran


# ---- isolation ---------------------------------------------------------------------------------------------
def test_a_variable_only_another_function_has_is_absent(stack: LocalStack, deploy: Deploy) -> None:
    mine = deploy(variables={"MINE": "1"})
    deploy(variables={"THEIRS": "2"})
    answer, _ = invoke(stack, mine, {})
    environment = answer["environment"]
    assert environment["MINE"] == "1" and "THEIRS" not in environment
    # Exactly what Lambda sets, the function's own, and the named local-only endpoints: nothing of this process.
    lambda_sets = {k for k in environment if k in variables.RESERVED or k in {"LANG", "PATH"}}
    # LC_CTYPE: Python's own locale coercion (PEP 538) where the machine lacks en_US.UTF-8, set by the interpreter.
    python_sets = {"LC_CTYPE"} & set(environment)
    expected = lambda_sets | python_sets | {"MINE"} | set(variables.LOCAL_ONLY) | {"AWS_LAMBDA_RUNTIME_API"}
    assert set(environment) == expected
    assert environment["AWS_LAMBDA_FUNCTION_NAME"] == mine and environment["AWS_SESSION_TOKEN"]
    assert not any("holdline_local" in entry or "/.venv/" in entry for entry in answer["path"])


def test_every_template_function_sees_only_its_own_configuration(stack: LocalStack) -> None:
    """What the runtime gives each function of template.yaml is SAM's merge of Globals and its own
    Environment, resolved: the sweeper has no BANK_API_URL although the bank legs do."""
    assert stack.stack is not None
    for name, spec in stack.stack.functions.items():
        configured = dict(stack.config(name).variables)
        assert set(configured) == set(spec.environment), name
    assert "BANK_API_URL" in stack.environment("DebitFunction")
    assert "BANK_API_URL" not in stack.environment("SweeperFunction")


def test_module_state_lives_per_environment(stack: LocalStack, deploy: Deploy) -> None:
    name = deploy()
    first, _ = invoke(stack, name, {})
    second, _ = invoke(stack, name, {})
    assert second["pid"] == first["pid"] and second["invocations"] == first["invocations"] + 1  # warm, reused
    other, _ = invoke(stack, deploy(), {})
    assert other["pid"] != first["pid"] and other["invocations"] == 1


def test_a_busy_environment_makes_another_start(stack: LocalStack, deploy: Deploy) -> None:
    name = deploy()
    answers: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: answers.append(invoke(stack, name, {"sleep": 1})[0])) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({a["pid"] for a in answers}) == 2
    assert stack.runtime is not None and stack.runtime.stats[name].cold_starts == 2


# ---- concurrency ----------------------------------------------------------------------------------------------
def test_reserved_concurrency_one_throttles_a_second_concurrent_invoke(stack: LocalStack, deploy: Deploy) -> None:
    name = deploy()
    invoke(stack, name, {})  # warm: the first invoke below is busy in its handler, not in Init
    stack.client("lambda").put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    busy = threading.Thread(target=invoke, args=(stack, name, {"sleep": 1.5}))
    busy.start()
    time.sleep(0.5)
    with pytest.raises(ClientError) as refused:
        stack.client("lambda", attempts=1).invoke(FunctionName=name, Payload=b"{}")  # no SDK retry of the 429
    busy.join()
    error = refused.value.response
    assert error["Error"]["Code"] == "TooManyRequestsException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert error.get("Reason") == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert stack.runtime is not None and stack.runtime.stats[name].throttles == 1
    assert invoke(stack, name, {})[1] is None  # free again


def test_step_functions_sees_a_throttle_as_lambda_too_many_requests(stack: LocalStack, deploy: Deploy) -> None:
    name = deploy()
    stack.client("lambda").put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    definition = one_task(name, {})
    execution = run_state_machine(stack, definition, invoke_role(stack, name))
    assert execution["status"] == "FAILED" and execution["error"] == "Lambda.TooManyRequestsException"


# ---- errors ------------------------------------------------------------------------------------------------
def test_a_handler_exception_answers_as_the_python_runtime_does(stack: LocalStack, deploy: Deploy) -> None:
    answer, error = invoke(stack, deploy(), {"raise": "missing"})
    assert error == "Unhandled"
    assert answer["errorType"] == "KeyError" and answer["errorMessage"] == "'missing'"
    assert answer["requestId"] and any("probe.py" in frame for frame in answer["stackTrace"])


# ---- IAM ---------------------------------------------------------------------------------------------------------
def test_a_role_without_put_item_is_denied_put_item(stack: LocalStack, deploy: Deploy) -> None:
    table = stack.arn("TrackerTable")
    name = deploy(actions=("dynamodb:GetItem",), resource=table)
    assert invoke(stack, name, {"get_item": True})[1] is None  # what the role allows works
    answer, error = invoke(stack, name, {"put_item": True})
    assert error == "Unhandled"
    assert "AccessDeniedException" in answer["errorMessage"] and "dynamodb:PutItem" in answer["errorMessage"]


def test_a_state_machine_role_that_may_not_invoke_fails_its_task(stack: LocalStack, deploy: Deploy) -> None:
    name = deploy()
    iam = stack.client("iam")
    role = iam.create_role(RoleName=f"NoInvoke{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument=json.dumps(TRUST))
    definition = one_task(name, {})
    execution = run_state_machine(stack, definition, role["Role"]["Arn"])
    assert execution["status"] == "FAILED" and execution["error"] == "Lambda.AccessDeniedException"


def test_where_moto_cannot_judge_a_policy_element_the_gap_is_known(stack: LocalStack, deploy: Deploy) -> None:
    """moto evaluates an identity policy's Action and Resource, not its Condition keys: a statement that
    AWS would only apply under a condition applies unconditionally here. Named, so nobody relies on it."""
    table = stack.arn("TrackerTable")
    name = deploy()
    stack.client("iam").put_role_policy(
        RoleName=f"{name}Role",
        PolicyName="conditional",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "dynamodb:GetItem",
                        "Resource": table,
                        "Condition": {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}},
                    }
                ],
            }
        ),
    )
    assert invoke(stack, name, {"get_item": True})[1] is None  # AWS would deny: the condition does not hold


# ---- asynchronous invocation -------------------------------------------------------------------------------
def test_an_async_invoke_that_keeps_failing_is_retried_twice_then_recorded_at_its_destination(
    stack: LocalStack, deploy: Deploy
) -> None:
    sqs = stack.client("sqs")
    queue = sqs.create_queue(QueueName=f"probe-failures-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    name = deploy(actions=("sqs:SendMessage",), resource=queue_arn)
    stack.client("lambda").put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnFailure": {"Destination": queue_arn}}
    )
    answer = stack.client("lambda").invoke(FunctionName=name, InvocationType="Event", Payload=b'{"raise": "x"}')
    assert answer["StatusCode"] == 202
    assert stack.async_invoker is not None
    stack.async_invoker.wait(60)
    assert stack.runtime is not None and stack.runtime.stats[name].invocations == 3  # first try + 2 retries
    messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    record = json.loads(messages[0]["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["responsePayload"]["errorType"] == "KeyError" and record["requestPayload"] == {"raise": "x"}


def test_a_destination_the_role_may_not_write_loses_the_record(stack: LocalStack, deploy: Deploy) -> None:
    sqs = stack.client("sqs")
    queue = sqs.create_queue(QueueName=f"probe-denied-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    name = deploy()  # no sqs:SendMessage
    stack.client("lambda").put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=0, DestinationConfig={"OnFailure": {"Destination": queue_arn}}
    )
    stack.client("lambda").invoke(FunctionName=name, InvocationType="Event", Payload=b'{"raise": "x"}')
    assert stack.async_invoker is not None
    stack.async_invoker.wait(30)
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)
    assert any(f == name and d == queue_arn for f, d, _ in stack.destination_failures)


# ---- the events AWS sends ------------------------------------------------------------------------------------------
def _scheduled(stack: LocalStack, function: str, rule_name: str, expression: str) -> Any:
    """A schedule rule targeting the function, with the permission EventBridge needs; the events client."""
    events, lam = stack.client("events"), stack.client("lambda")
    rule = events.put_rule(Name=rule_name, ScheduleExpression=expression)["RuleArn"]
    lam.add_permission(
        FunctionName=function,
        StatementId="schedule",
        Action="lambda:InvokeFunction",
        Principal="events.amazonaws.com",
        SourceArn=rule,
    )
    events.put_targets(Rule=rule_name, Targets=[{"Id": "probe", "Arn": function_arn(function)}])
    return events


def test_schedule_rules_fire_on_the_time_scale(stack: LocalStack, deploy: Deploy) -> None:
    name = deploy()
    events = _scheduled(stack, name, f"every-minute-{name}", "rate(1 minute)")
    time.sleep(60 * stack.time_scale * 3.5)  # three and a half periods
    events.disable_rule(Name=f"every-minute-{name}")
    assert stack.async_invoker is not None
    stack.async_invoker.wait(30)
    assert stack.runtime is not None and stack.runtime.stats[name].invocations >= 2


def test_a_schedule_rule_matches_no_event(stack: LocalStack, deploy: Deploy) -> None:
    """A rule with only a ScheduleExpression fires on its schedule and on nothing else (PutRule); moto's empty
    event pattern matched every event, so the sweeper ran on every event put on the default bus."""
    name = deploy()
    events = _scheduled(stack, name, f"daily-{name}", "rate(1 day)")
    try:
        entry = {"Source": "holdline.test", "DetailType": "Anything", "Detail": json.dumps({"x": 1})}
        assert events.put_events(Entries=[entry])["FailedEntryCount"] == 0
        stack.settle()
        assert stack.runtime is not None
        stats = stack.runtime.stats.get(name)
        assert stats is None or stats.invocations == 0, "the schedule rule's target ran on an event"
    finally:
        events.disable_rule(Name=f"daily-{name}")


def test_every_execution_that_ends_puts_a_status_change_event_on_the_default_bus(
    stack: LocalStack, deploy: Deploy
) -> None:
    sqs, events = stack.client("sqs"), stack.client("events")
    queue = sqs.create_queue(QueueName=f"status-changes-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule_name = f"status-{uuid.uuid4().hex[:8]}"
    events.put_rule(
        Name=rule_name,
        EventPattern=json.dumps({"source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"]}),
    )
    events.put_targets(Rule=rule_name, Targets=[{"Id": "queue", "Arn": queue_arn}])
    definition = {"StartAt": "Fail", "States": {"Fail": {"Type": "Fail", "Error": "Probe", "Cause": "on purpose"}}}
    execution = run_state_machine(stack, definition, invoke_role(stack, deploy()))
    seen: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 10
    # Each event is delivered on its own: FAILED may arrive before RUNNING.
    while not {"RUNNING", "FAILED"} <= set(seen) and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            event = json.loads(message["Body"])
            if event["detail"]["executionArn"] == execution["executionArn"]:
                seen[event["detail"]["status"]] = event
    events.remove_targets(Rule=rule_name, Ids=["queue"])
    events.delete_rule(Name=rule_name)
    assert {"RUNNING", "FAILED"} <= set(seen)
    failed = seen["FAILED"]
    assert failed["source"] == "aws.states" and failed["resources"] == [execution["executionArn"]]
    assert failed["detail"]["error"] == "Probe" and failed["detail"]["stopDate"] >= failed["detail"]["startDate"]


# ---- time scale -------------------------------------------------------------------------------------------------
def test_the_timeout_scale_applies_to_functions_and_tasks_alike(stack: LocalStack, deploy: Deploy) -> None:
    name = deploy(timeout=10)
    previous = moto_adapter.set_timeout_scale(0.1)
    try:
        started = time.monotonic()
        answer, _ = invoke(stack, name, {"sleep": 5})
        assert answer["errorType"] == "Sandbox.Timedout" and time.monotonic() - started < 3
        assert answer["errorMessage"].endswith("after 10.00 seconds")  # the configured Timeout, on the time scale
    finally:
        moto_adapter.set_timeout_scale(previous)
    with pytest.raises(ValueError):
        moto_adapter.set_timeout_scale(0)
