"""The shipped Connect flow (flows/transfer-flow.json) and the nested template that deploys it.

The Connect integration is an optional unit of its own: connect/template.yaml, nested in template.yaml as the
``AWS::Serverless::Application`` ``ConnectIntegration`` (created only with ``ConnectInstanceArn``). That nested
template is generated from the flow file, so the file stays the one source: every ``${<Name>FunctionArn}`` the
flow invokes becomes a parameter, a Lambda permission for Connect (this instance, this account) and an
integration association; the flow itself is the ``AWS::Connect::ContactFlow``'s ``Content`` (CloudFormation
cannot read a file into it), deployed with ``ConnectFallbackQueueArn``. ``python -m holdline_local.flows sync``
(``make flow-sync``) rewrites connect/template.yaml; tests fail while it differs from what the flow implies.
The parent passes each function's ARN (``!GetAtt <Function>.Arn``): that is where a placeholder meets its
function, and :func:`function_placeholders` reads it there.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from holdline_local.template import REPO_ROOT, TEMPLATE_PATH, load_template

FLOW_PATH = REPO_ROOT / "flows" / "transfer-flow.json"
CONNECT_TEMPLATE_PATH = REPO_ROOT / "connect" / "template.yaml"
CONNECT_APPLICATION = "ConnectIntegration"  # the nested application's logical ID in template.yaml
FLOW_RESOURCE = "TransferContactFlow"  # the contact flow's logical ID in connect/template.yaml
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9]+)\}")
_FUNCTION_ARN = re.compile(r"^\$\{([A-Za-z0-9]+FunctionArn)\}$")
_INSTANCE_PATTERN = "arn:aws[a-z-]*:connect:[a-z0-9-]+:[0-9]{12}:instance/[0-9a-f-]{36}"


def load_flow(path: Path = FLOW_PATH) -> dict[str, Any]:
    flow: dict[str, Any] = json.loads(path.read_text())
    return flow


def invoked_placeholders(flow: dict[str, Any]) -> list[str]:
    """The ``<Name>FunctionArn`` placeholders of the functions the flow invokes, in the flow's order."""
    found: list[str] = []
    for action in flow["Actions"]:
        match = _FUNCTION_ARN.match(str(action.get("Parameters", {}).get("LambdaFunctionARN", "")))
        if action["Type"] == "InvokeLambdaFunction" and match and match.group(1) not in found:
            found.append(match.group(1))
    return found


def _short(placeholder: str) -> str:
    """``StarterFunctionArn`` -> ``Starter``: the prefix of the permission's and association's logical IDs."""
    return placeholder.removesuffix("FunctionArn")


def render_connect_template(flow: dict[str, Any]) -> str:
    """connect/template.yaml as the flow implies it."""
    functions = invoked_placeholders(flow)
    others = sorted(set(_PLACEHOLDER.findall(json.dumps(flow))) - set(functions) - {"ConnectFallbackQueueArn"})
    if others:
        raise ValueError(f"the flow uses placeholders the Connect template cannot fill: {others}")
    lines = [
        "# GENERATED from flows/transfer-flow.json by `make flow-sync` (holdline_local/flows.py):",
        "# edit those, not this file.",
        'AWSTemplateFormatVersion: "2010-09-09"',
        "Description: >",
        "  Holdline's Amazon Connect integration, nested in template.yaml as ConnectIntegration (created only with",
        "  ConnectInstanceArn): Connect may invoke the functions the flow names, only from this instance and in this",
        "  account; they are associated with the instance; with ConnectFallbackQueueArn the flow is deployed.",
        "",
        "Parameters:",
        "  ConnectInstanceArn:",
        "    Type: String",
        "    Description: The Connect instance that invokes the functions (arn:aws:connect:REGION:ACCOUNT:instance/ID)",
        f'    AllowedPattern: "^{_INSTANCE_PATTERN}$"',
        "  ConnectFallbackQueueArn:",
        "    Type: String",
        "    Description: The queue every Error branch ends in (or a callback through it); empty, no flow is deployed.",
        '    Default: ""',
        f'    AllowedPattern: "^$|^{_INSTANCE_PATTERN}/queue/[0-9a-f-]{{36}}$"',
        "  ContactFlowName:",
        "    Type: String",
        "    Description: The flow's name in the instance (unique per instance).",
        "    Default: Holdline transfer",
    ]
    for placeholder in functions:
        lines += [
            f"  {placeholder}:",
            "    Type: String",
            "    Description: The ARN of the function the flow invokes by this name (its LambdaFunctionARN).",
        ]
    lines += [
        "",
        "Conditions:",
        '  DeployContactFlow: !Not [!Equals [!Ref ConnectFallbackQueueArn, ""]]',
        "",
        "Resources:",
    ]
    for placeholder in functions:
        name = _short(placeholder)
        lines += [
            "  # Connect may invoke it: only this instance, only in this account.",
            f"  {name}ConnectPermission:",
            "    Type: AWS::Lambda::Permission",
            "    Properties:",
            "      Action: lambda:InvokeFunction",
            f"      FunctionName: !Ref {placeholder}",
            "      Principal: connect.amazonaws.com",
            "      SourceArn: !Ref ConnectInstanceArn",
            "      SourceAccount: !Ref AWS::AccountId",
            '  # A flow may only name functions added to the instance ("Flows > AWS Lambda" in the console).',
            f"  {name}ConnectAssociation:",
            "    Type: AWS::Connect::IntegrationAssociation",
            "    Properties:",
            "      InstanceId: !Ref ConnectInstanceArn",
            "      IntegrationType: LAMBDA_FUNCTION",
            f"      IntegrationArn: !Ref {placeholder}",
        ]
    description = str(flow.get("Metadata", {}).get("description", "Holdline transfer"))[:500]
    lines += [
        "  # The shipped flow; each ${...} is a parameter of this template (Fn::Sub fills them in).",
        f"  {FLOW_RESOURCE}:",
        "    Type: AWS::Connect::ContactFlow",
        "    Condition: DeployContactFlow",
        "    DependsOn:",
        *[f"      - {_short(p)}ConnectAssociation" for p in functions],
        "    Properties:",
        "      InstanceArn: !Ref ConnectInstanceArn",
        "      Name: !Ref ContactFlowName",
        f"      Description: {json.dumps(description, ensure_ascii=False)}",
        "      Type: CONTACT_FLOW",
        "      State: ACTIVE",
        "      Content: !Sub |",
        *[f"        {line}" for line in json.dumps(flow, indent=2, ensure_ascii=False).splitlines()],
        "",
        "Outputs:",
        "  TransferContactFlowArn:",
        "    Description: The deployed flow (empty without ConnectFallbackQueueArn).",
        f'    Value: !If [DeployContactFlow, !GetAtt {FLOW_RESOURCE}.ContactFlowArn, ""]',
    ]
    return "\n".join(lines) + "\n"


def load_connect_template(path: Path = CONNECT_TEMPLATE_PATH) -> dict[str, Any]:
    return load_template(path)


def template_flow(connect_template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The flow as connect/template.yaml deploys it (before Fn::Sub)."""
    connect_template = connect_template or load_connect_template()
    content = connect_template["Resources"][FLOW_RESOURCE]["Properties"]["Content"]["Fn::Sub"]
    flow: dict[str, Any] = json.loads(content)
    return flow


def application_parameters(template: dict[str, Any] | None = None) -> dict[str, Any]:
    """What template.yaml passes to the nested Connect template (parameter -> unresolved value)."""
    template = template or load_template()
    parameters: dict[str, Any] = template["Resources"][CONNECT_APPLICATION]["Properties"]["Parameters"]
    return parameters


def function_placeholders(template: dict[str, Any] | None = None) -> dict[str, str]:
    """Placeholder (``StarterFunctionArn``) -> function logical ID, from what the parent passes the nested
    template (``!GetAtt StarterFunction.Arn``)."""
    mapping: dict[str, str] = {}
    for name, value in application_parameters(template).items():
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            if attribute == "Arn":
                mapping[name] = logical_id
    return mapping


def sync_template(flow_path: Path = FLOW_PATH, connect_path: Path = CONNECT_TEMPLATE_PATH) -> bool:
    """Regenerate connect/template.yaml from the flow file; True if it changed."""
    rendered = render_connect_template(load_flow(flow_path))
    if connect_path.exists() and connect_path.read_text() == rendered:
        return False
    connect_path.parent.mkdir(parents=True, exist_ok=True)
    connect_path.write_text(rendered)
    return True


def missing_in_parent(template_path: Path = TEMPLATE_PATH) -> list[str]:
    """The nested template's parameters template.yaml does not pass (flow-sync reports them; tests refuse)."""
    wanted = set(load_connect_template()["Parameters"]) - {"ContactFlowName", "ConnectFallbackQueueArn"}
    return sorted(wanted - set(application_parameters(load_template(template_path))))


def main(argv: list[str]) -> int:
    if argv[1:] != ["sync"]:
        print("usage: python -m holdline_local.flows sync", file=sys.stderr)
        return 2
    changed = sync_template()
    target = CONNECT_TEMPLATE_PATH.relative_to(REPO_ROOT)
    print(f"{target} {'regenerated from' if changed else 'already matches'} {FLOW_PATH.relative_to(REPO_ROOT)}")
    missing = missing_in_parent()
    if missing:
        print(
            f"template.yaml's {CONNECT_APPLICATION} must pass {', '.join(missing)} (e.g. !GetAtt <Function>.Arn)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
