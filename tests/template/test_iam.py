"""Least privilege, checked on the template as CloudFormation will create it (after the SAM transform).

The transform runs in .venv-sam (aws-sam-cli's own aws-sam-translator; `make install` creates it), offline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from holdline_local.flows import CONNECT_APPLICATION, CONNECT_TEMPLATE_PATH, function_placeholders
from holdline_local.template import TransformFailed, transform
from tests.helpers import MONEY_LEGS

REPO = Path(__file__).resolve().parents[2]
SAM_PYTHON = REPO / ".venv-sam" / "bin" / "python"
CONNECT_FACING = {
    "StarterFunction",
    "StatusFunction",
    "ResultsFunction",
    "ConfigLookupFunction",
    "OutcomeWaiterFunction",
}
# Actions AWS only grants on "*" (they take no resource ARN): X-Ray writes and CloudWatch Logs' log delivery.
STAR_ONLY_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}
# AWS-managed policies SAM attaches: basic execution (a function's own logs) and X-Ray writes (Tracing).
ALLOWED_MANAGED = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}


@cache
def transformed(path: Path = REPO / "template.yaml") -> dict[str, Any]:
    try:
        return transform(path)
    except TransformFailed as failure:
        pytest.fail(str(failure))


def resources(kind: str, path: Path = REPO / "template.yaml") -> dict[str, dict[str, Any]]:
    return {k: v for k, v in transformed(path)["Resources"].items() if v["Type"] == kind}


def connect_template() -> dict[str, Any]:
    """The nested Connect integration (connect/template.yaml), as CloudFormation will see it."""
    return transformed(CONNECT_TEMPLATE_PATH)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(role_id: str) -> Iterator[dict[str, Any]]:
    role = transformed()["Resources"][role_id]["Properties"]
    for policy in role.get("Policies", []):
        if "Fn::If" in policy:  # a grant that exists only under a condition: check it as if it held
            policy = policy["Fn::If"][1]
        for statement in _as_list(policy["PolicyDocument"]["Statement"]):
            yield {
                **statement,
                "Action": sorted(_as_list(statement["Action"])),
                "Resource": _as_list(statement["Resource"]),
            }


def grants(role_id: str) -> dict[str, list[Any]]:
    """action -> resources it is allowed on (Allow statements only; Deny statements would only narrow)."""
    found: dict[str, list[Any]] = {}
    for statement in statements(role_id):
        assert statement["Effect"] == "Allow", statement
        for action in statement["Action"]:
            found.setdefault(action, []).extend(statement["Resource"])
    return found


TRACKER = {"Fn::GetAtt": ["TrackerTable", "Arn"]}


def test_starter_may_only_create_the_tracker_row_and_start_this_state_machine() -> None:
    assert grants("StarterFunctionRole") == {
        "dynamodb:GetItem": [TRACKER],
        "dynamodb:PutItem": [TRACKER],
        # The follow-up workflow (a callback the caller asks for) starts through the same starter.
        "states:StartExecution": [{"Ref": "TransferStateMachine"}, {"Ref": "FollowUpStateMachine"}],
    }


def test_results_may_only_read_one_tracker_row() -> None:
    assert grants("ResultsFunctionRole") == {"dynamodb:GetItem": [TRACKER]}


@pytest.mark.parametrize("function", ["StatusFunction", "OutcomeWaiterFunction"])
def test_status_and_the_waiter_may_read_a_row_and_start_or_end_one_left_at_started(function: str) -> None:
    """A row left at STARTED (holdline/logic/tracking.py): start its execution on our own state machines only,
    or end the row (a conditional UpdateItem of the tracker table). Nothing else."""
    assert grants(f"{function}Role") == {
        "dynamodb:GetItem": [TRACKER],
        "dynamodb:UpdateItem": [TRACKER],
        "states:StartExecution": [{"Ref": "TransferStateMachine"}, {"Ref": "FollowUpStateMachine"}],
    }


def test_config_lookup_may_only_read_the_config_table() -> None:
    assert grants("ConfigLookupFunctionRole") == {"dynamodb:GetItem": [{"Fn::GetAtt": ["ConfigTable", "Arn"]}]}


def test_state_machine_invokes_only_its_own_functions_and_updates_only_its_table() -> None:
    machine = transformed()["Resources"]["TransferStateMachine"]["Properties"]
    substitutions = machine["DefinitionSubstitutions"]
    own_functions = [v for k, v in substitutions.items() if k.endswith("FunctionArn")]
    allowed = grants("TransferStateMachineRole")
    assert sorted(map(json.dumps, allowed.pop("lambda:InvokeFunction"))) == sorted(map(json.dumps, own_functions))
    for function in own_functions:
        assert transformed()["Resources"][function["Fn::GetAtt"][0]]["Type"] == "AWS::Lambda::Function"
    assert allowed.pop("dynamodb:UpdateItem") == [TRACKER]
    assert set(allowed) <= STAR_ONLY_ACTIONS, allowed


def test_no_wildcard_where_aws_allows_a_narrower_grant() -> None:
    for role_id in resources("AWS::IAM::Role"):
        for statement in statements(role_id):
            assert not any("*" in action for action in statement["Action"]), (role_id, statement)
            if "*" in statement["Resource"]:
                assert set(statement["Action"]) <= STAR_ONLY_ACTIONS, (role_id, statement)
        managed = set(transformed()["Resources"][role_id]["Properties"].get("ManagedPolicyArns", []))
        assert managed <= ALLOWED_MANAGED, (role_id, managed)


def test_no_function_can_scan_or_describe_executions() -> None:
    """No Scan anywhere; DescribeExecution (15/s refill) and Query only for the sweeper, which paces them and
    reads its own index (docs/failure-events.md), never for a function on the Connect path."""
    for role_id in resources("AWS::IAM::Role"):
        actions = set(grants(role_id))
        assert "dynamodb:Scan" not in actions, role_id
        if role_id != "SweeperFunctionRole":
            assert not actions & {"dynamodb:Query", "states:DescribeExecution"}, role_id
    sweeper = grants("SweeperFunctionRole")
    assert sweeper["dynamodb:Query"] == [TRACKER, {"Fn::Sub": "${TrackerTable.Arn}/index/StatusCreatedIndex"}]
    # Each workflow's executions (a row is checked against its own workflow's execution), nothing else.
    described = sorted(json.dumps(r) for r in sweeper["states:DescribeExecution"])
    assert len(described) == 2, described
    assert "execution:${FollowUpStateMachine.Name}:*" in described[0]
    assert "execution:${TransferStateMachine.Name}:*" in described[1]


def test_connect_may_invoke_only_the_connect_facing_functions_of_this_instance_and_account() -> None:
    # The nested template grants Connect each function the parent passes it, by ARN...
    application = transformed()["Resources"][CONNECT_APPLICATION]
    assert application["Type"] == "AWS::CloudFormation::Stack" and application["Condition"] == "HasConnectInstance"
    passed = application["Properties"]["Parameters"]
    assert passed["ConnectInstanceArn"] == {"Ref": "ConnectInstanceArn"}
    connect = resources("AWS::Lambda::Permission", CONNECT_TEMPLATE_PATH)
    invoked = set()
    for name, permission in connect.items():
        properties = permission["Properties"]
        function = passed[properties["FunctionName"]["Ref"]]
        assert function["Fn::GetAtt"][1] == "Arn", name
        invoked.add(function["Fn::GetAtt"][0])
        assert properties["Principal"] == "connect.amazonaws.com", name
        assert properties["Action"] == "lambda:InvokeFunction", name
        assert properties["SourceArn"] == {"Ref": "ConnectInstanceArn"}, name
        assert properties["SourceAccount"] == {"Ref": "AWS::AccountId"}, name
    assert invoked == CONNECT_FACING == set(function_placeholders().values())
    # ...and nothing else: no role, no other grant, only the integration's own kinds of resource.
    kinds = {resource["Type"] for resource in connect_template()["Resources"].values()}
    assert kinds == {"AWS::Lambda::Permission", "AWS::Connect::IntegrationAssociation", "AWS::Connect::ContactFlow"}
    # In the parent, nothing else may invoke anything: only EventBridge, and only from a rule of this stack.
    for name, permission in resources("AWS::Lambda::Permission").items():
        properties = permission["Properties"]
        assert properties["Principal"] == "events.amazonaws.com", name
        rule = properties["SourceArn"]["Fn::GetAtt"]
        assert transformed()["Resources"][rule[0]]["Type"] == "AWS::Events::Rule" and rule[1] == "Arn", name


def test_contact_flow_is_deployed_only_with_an_instance_and_a_queue() -> None:
    assert "ConnectInstanceArn" in json.dumps(transformed()["Conditions"]["HasConnectInstance"])
    nested = connect_template()
    assert nested["Resources"]["TransferContactFlow"]["Condition"] == "DeployContactFlow"
    assert "ConnectFallbackQueueArn" in json.dumps(nested["Conditions"]["DeployContactFlow"])
    for association in resources("AWS::Connect::IntegrationAssociation", CONNECT_TEMPLATE_PATH).values():
        assert association["Properties"]["InstanceId"] == {"Ref": "ConnectInstanceArn"}
    # The parent no longer holds any of it.
    assert not resources("AWS::Connect::IntegrationAssociation") and not resources("AWS::Connect::ContactFlow")


def test_tables_encrypted_with_point_in_time_recovery() -> None:
    for name, table in resources("AWS::DynamoDB::Table").items():
        properties = table["Properties"]
        assert properties["SSESpecification"]["SSEEnabled"] is True, name
        assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, name
        assert table.get("DeletionPolicy") == "Retain", name


def test_every_function_traced_with_a_log_group_of_limited_retention() -> None:
    groups = resources("AWS::Logs::LogGroup")
    named = {json.dumps(g["Properties"]["LogGroupName"]): g for g in groups.values()}
    for name, function in resources("AWS::Lambda::Function").items():
        assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}, name
        group = named.get(json.dumps({"Fn::Sub": f"/aws/lambda/${{{name}}}"}))
        assert group is not None, f"{name} has no AWS::Logs::LogGroup /aws/lambda/${{{name}}}"
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name


def test_state_machine_logs_without_execution_data_and_traces() -> None:
    machine = transformed()["Resources"]["TransferStateMachine"]["Properties"]
    logging = machine["LoggingConfiguration"]
    assert logging["Level"] == "ALL" and logging["IncludeExecutionData"] is False
    destination = logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]
    group = transformed()["Resources"][destination["Fn::GetAtt"][0]]
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert machine["TracingConfiguration"] == {"Enabled": True}


def test_money_legs_reserve_concurrency_and_the_waiter_is_capped_below_the_account_limit() -> None:
    """Issue 19, item 6. Lambda's default account limit is 1000 and at least 100 must stay unreserved ("Configuring
    reserved concurrency", https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html)."""
    from holdline_local.template import load_template

    resources = load_template()["Resources"]
    reserved = {
        name: int(r["Properties"]["ReservedConcurrentExecutions"])
        for name, r in resources.items()
        if r["Type"] == "AWS::Serverless::Function" and "ReservedConcurrentExecutions" in r["Properties"]
    }
    assert all(reserved.get(leg, 0) > 0 for leg in MONEY_LEGS), reserved
    assert 0 < reserved["OutcomeWaiterFunction"] < 1000
    assert 1000 - sum(reserved.values()) >= 100
    for leg in MONEY_LEGS:
        alarm = resources[f"{leg}ThrottlesAlarm"]["Properties"]
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Threshold"]) == ("AWS/Lambda", "Throttles", 0)
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Fn::Sub": "${" + leg + "}"}}]
