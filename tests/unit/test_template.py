"""template.yaml is the single source of truth: check what tools and the local stack rely on."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from holdline_local.template import load_template, read_stack

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = load_template()
RESOURCES = TEMPLATE["Resources"]


def test_logical_ids_the_tools_use() -> None:
    for logical_id, kind in {
        "StarterFunction": "AWS::Serverless::Function",
        "StatusFunction": "AWS::Serverless::Function",
        "ResultsFunction": "AWS::Serverless::Function",
        "OutcomeWaiterFunction": "AWS::Serverless::Function",
        "ConnectIntegration": "AWS::Serverless::Application",
        "DebitFunction": "AWS::Serverless::Function",
        "CreditFunction": "AWS::Serverless::Function",
        "ConfirmFunction": "AWS::Serverless::Function",
        "RefundFunction": "AWS::Serverless::Function",
        "TransferStateMachine": "AWS::Serverless::StateMachine",
        "TrackerTable": "AWS::DynamoDB::Table",
    }.items():
        assert RESOURCES[logical_id]["Type"] == kind, logical_id


def test_runtime_and_powertools_globals() -> None:
    globals_fn = TEMPLATE["Globals"]["Function"]
    assert globals_fn["Runtime"] == "python3.11"
    assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL", "POWERTOOLS_METRICS_NAMESPACE"} <= set(
        globals_fn["Environment"]["Variables"]
    )


def test_state_machine_is_standard_with_substitutions_for_every_placeholder() -> None:
    machine = RESOURCES["TransferStateMachine"]["Properties"]
    assert machine["Type"] == "STANDARD"
    definition = (REPO / machine["DefinitionUri"]).read_text()
    placeholders = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", definition))
    assert placeholders == set(machine["DefinitionSubstitutions"])


def test_tracker_table_on_demand_with_ttl() -> None:
    table = RESOURCES["TrackerTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}


def test_every_handler_resolves_to_a_callable() -> None:
    import importlib

    for spec in read_stack().functions.values():
        module, _, attribute = spec.handler.rpartition(".")
        assert callable(getattr(importlib.import_module(module), attribute)), spec.logical_id
        assert spec.code_uri == REPO / "functions"


def test_the_local_reader_reads_the_nested_connect_integration_under_its_conditions() -> None:
    assert read_stack().nested == {}  # no ConnectInstanceArn: no nested stack
    instance = "arn:aws:connect:us-east-1:123456789012:instance/00000000-0000-4000-8000-000000000000"
    with_instance = read_stack(parameter_overrides={"ConnectInstanceArn": instance})
    assert with_instance.nested["ConnectIntegration"].template_path == REPO / "connect" / "template.yaml"
    permissions = with_instance.of_type("AWS::Lambda::Permission")
    assert "ConnectIntegration.OutcomeWaiterConnectPermission" in permissions
    assert "ConnectIntegration.TransferContactFlow" not in with_instance.others  # no queue: no flow
    queue = f"{instance}/queue/00000000-0000-4000-8000-000000000001"
    with_queue = read_stack(parameter_overrides={"ConnectInstanceArn": instance, "ConnectFallbackQueueArn": queue})
    assert with_queue.others["ConnectIntegration.TransferContactFlow"][0] == "AWS::Connect::ContactFlow"


def test_cfn_lint_is_clean() -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            "--format",
            "json",
            str(REPO / "template.yaml"),
            str(REPO / "connect" / "template.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, json.dumps(json.loads(result.stdout or "[]"), indent=1)[:3000]
