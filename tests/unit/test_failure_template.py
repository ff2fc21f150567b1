"""The template's failure plumbing: every async path has an encrypted DLQ, every DLQ an alarm, the alarms
the issue asks for exist, the webhook is optional. Rules and permissions are read as CloudFormation creates
them (after the Serverless transform: SAM makes them from the functions' ``Events``)."""

from __future__ import annotations

import json
import re
from typing import Any

from holdline_local.dlq import discover
from holdline_local.template import evaluate_conditions, load_template, read_stack, transform

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


def of_type(kind: str, resources: dict[str, Any] = RESOURCES) -> dict[str, Any]:
    return {k: v for k, v in resources.items() if v["Type"] == kind}


def getatt(value: Any) -> str:
    return str(value["Fn::GetAtt"][0])


def named(value: Any) -> str:
    """The logical ID a value names: ``Ref X``, ``GetAtt X.Attr``, or ``Sub "${X}"`` / ``"${X.Attr}"``."""
    if "Ref" in value:
        return str(value["Ref"])
    if "Fn::GetAtt" in value:
        return getatt(value)
    match = re.fullmatch(r"\$\{([A-Za-z0-9]+)(\.[A-Za-z]+)?\}", value["Fn::Sub"])
    assert match, value
    return match.group(1)


def test_every_queue_is_standard_encrypted_and_kept_14_days() -> None:
    queues = of_type("AWS::SQS::Queue")
    assert len(queues) >= 5
    for name, queue in queues.items():
        props = queue["Properties"]
        assert props["SqsManagedSseEnabled"] is True, name  # EventBridge cannot use alias/aws/sqs
        assert not props.get("FifoQueue"), name
        assert props["MessageRetentionPeriod"] == 1209600, name


def test_every_rule_target_retries_then_dead_letters() -> None:
    rules = of_type("AWS::Events::Rule", transform()["Resources"])
    assert len(rules) == 5  # status changes, the schedule, Connect's rule failures, the trigger, the webhook
    for name, rule in rules.items():
        for target in rule["Properties"]["Targets"]:
            assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1, name
            assert getatt(target["DeadLetterConfig"]["Arn"]) in RESOURCES, name


def test_async_lambdas_have_on_failure_destinations() -> None:
    for name in ("ReconcilerFunction", "SweeperFunction", "ConnectRuleFailureFunction", "FollowUpTriggerFunction"):
        config = RESOURCES[name]["Properties"]["EventInvokeConfig"]
        assert getatt(config["DestinationConfig"]["OnFailure"]["Destination"]) == "AsyncInvokeDLQ"


def test_stream_mapping_filters_to_failed_and_dead_letters() -> None:
    table = RESOURCES["TrackerTable"]["Properties"]
    assert table["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == ["StatusCreatedIndex"]
    esm = RESOURCES["FailureNotifierStream"]["Properties"]
    assert esm["BisectBatchOnFunctionError"] is True and esm["MaximumRetryAttempts"] > 0
    assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert getatt(esm["DestinationConfig"]["OnFailure"]["Destination"]) == "FailureNotifierDLQ"
    [pattern] = [json.loads(f["Pattern"]) for f in esm["FilterCriteria"]["Filters"]]
    assert pattern["dynamodb"]["OldImage"]["status"]["S"] == ["RUNNING"]
    assert pattern["dynamodb"]["NewImage"]["status"]["S"] == ["FAILED"]


def test_every_dead_letter_queue_has_a_depth_alarm() -> None:
    alarmed = {
        named(d["Value"])
        for alarm in of_type("AWS::CloudWatch::Alarm").values()
        for d in alarm["Properties"].get("Dimensions", [])
        if d["Name"] == "QueueName"
    }
    all_queues = {q.logical_id for q in discover({"WebhookUrl": "https://ops.example.com/hook"})}
    assert all_queues == set(of_type("AWS::SQS::Queue")) and all_queues <= alarmed
    for alarm in of_type("AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        if props["MetricName"] == "ApproximateNumberOfMessagesVisible":
            assert (props["Threshold"], props["ComparisonOperator"]) == (0, "GreaterThanThreshold")


def test_the_alarms_the_operator_needs() -> None:
    metrics = {
        (a["Properties"]["Namespace"], a["Properties"]["MetricName"])
        for a in of_type("AWS::CloudWatch::Alarm").values()
    }
    assert {
        ("AWS/States", "ExecutionsFailed"),
        ("AWS/States", "ExecutionsTimedOut"),
        ("Holdline", "RefundsPending"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Duration"),
    } <= metrics
    by_function: dict[str, list[dict[str, Any]]] = {}
    for alarm in of_type("AWS::CloudWatch::Alarm").values():
        for dimension in alarm["Properties"].get("Dimensions", []):
            if dimension["Name"] == "FunctionName":
                by_function.setdefault(named(dimension["Value"]), []).append(alarm["Properties"])
    for function in ("StarterFunction", "StatusFunction", "ResultsFunction"):
        alarms = by_function[function]
        assert {a["MetricName"] for a in alarms} == {"Errors", "Duration"}, function
        assert [a["ExtendedStatistic"] for a in alarms if a["MetricName"] == "Duration"] == ["p99"]
    # It raises until a Connect rule failure is handled: errors mean failures waiting in AsyncInvokeDLQ.
    assert [a["MetricName"] for a in by_function["ConnectRuleFailureFunction"]] == ["Errors"]
    for alarm in of_type("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert "AWS::CloudWatch::Dashboard" in {r["Type"] for r in RESOURCES.values()}


def test_webhook_is_optional_and_complete() -> None:
    webhook = {k for k, v in RESOURCES.items() if v.get("Condition") == "HasWebhook"}
    assert {"WebhookConnection", "WebhookDestination", "FailureWebhookRule", "WebhookTargetDLQ"} <= webhook
    assert evaluate_conditions(TEMPLATE, {"WebhookUrl": ""})["HasWebhook"] is False
    assert evaluate_conditions(TEMPLATE, {"WebhookUrl": "https://x"})["HasWebhook"] is True
    assert "FailureWebhookRule" not in read_stack().others
    assert "FailureWebhookRule" in read_stack(parameter_overrides={"WebhookUrl": "https://x"}).others
    assert TEMPLATE["Parameters"]["WebhookApiKey"]["NoEcho"] is True


def test_dead_letter_queues_are_discovered_with_their_kind() -> None:
    kinds = {q.logical_id: (q.kind, q.source) for q in discover()}
    # A queue several sources share names the first one in the template (replay reads the message's own).
    assert kinds["AsyncInvokeDLQ"][1] in {
        "ReconcilerFunction",
        "SweeperFunction",
        "FollowUpTriggerFunction",
        "ConnectRuleFailureFunction",
    }
    kinds["AsyncInvokeDLQ"] = ("lambda-async", "ReconcilerFunction")
    assert kinds == {
        "AsyncInvokeDLQ": ("lambda-async", "ReconcilerFunction"),
        "FailureNotifierDLQ": ("stream-esm", "FailureNotifierStream"),
        "ReconcilerTargetDLQ": ("eventbridge-target", "ReconcilerFunctionExecutionStatus"),
        "SweeperTargetDLQ": ("eventbridge-target", "SweeperFunctionSchedule"),
        "FollowUpTargetDLQ": ("eventbridge-target", "ConnectRuleFailureFunctionRuleActionFailed"),
        "FollowUpDeadLetterQueue": ("needs-a-person", "FollowUpDeadLetterQueue"),
    }


def test_every_workflows_executions_are_watched_and_only_our_instances_rule_failures() -> None:
    resources = transform()["Resources"]
    machines = [{"Ref": k} for k, v in resources.items() if v["Type"] == "AWS::StepFunctions::StateMachine"]
    status = resources["ReconcilerFunctionExecutionStatus"]["Properties"]["EventPattern"]
    assert sorted(map(json.dumps, status["detail"]["stateMachineArn"])) == sorted(map(json.dumps, machines))
    # The default bus carries the rule failures of every Connect instance in the account.
    connect = resources["ConnectRuleFailureFunctionRuleActionFailed"]["Properties"]["EventPattern"]
    assert connect["detail"]["instanceArn"] == [{"Ref": "ConnectInstanceArn"}]
