"""Fn::ForEach as CloudFormation's AWS::LanguageExtensions transform expands it (holdline_local/language_extensions.py),
checked against the documented rules and against SAM CLI's own expansion of template.yaml."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from holdline_local.language_extensions import InvalidForEach, expand
from holdline_local.template import REPO_ROOT, SAM_PYTHON, TEMPLATE_PATH, load_template

TRANSFORMS = ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]


def template(resources: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return {"Transform": list(TRANSFORMS), "Resources": resources, **sections}


def test_a_loop_makes_one_resource_per_item_with_the_identifier_replaced() -> None:
    expanded = expand(
        template(
            {
                "Fn::ForEach::Queues": [
                    "Queue",
                    ["Orders", "Refunds"],
                    {
                        "${Queue}Alarm": {
                            "Type": "AWS::CloudWatch::Alarm",
                            "Properties": {
                                "AlarmDescription": "${Queue} holds messages",
                                "Dimensions": [{"Value": {"Fn::GetAtt": [{"Ref": "Queue"}, "QueueName"]}}],
                                "AlarmActions": [{"Fn::Sub": "${${Queue}Topic}"}],
                            },
                        }
                    },
                ],
                "Kept": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": {"Ref": "Queue"}}},
            }
        )
    )
    assert expanded["Transform"] == "AWS::Serverless-2016-10-31"  # the next transform runs on the result
    resources = expanded["Resources"]
    assert list(resources) == ["OrdersAlarm", "RefundsAlarm", "Kept"]
    props = resources["RefundsAlarm"]["Properties"]
    assert props["AlarmDescription"] == "Refunds holds messages"
    assert props["Dimensions"] == [{"Value": {"Fn::GetAtt": ["Refunds", "QueueName"]}}]
    assert props["AlarmActions"] == [{"Fn::Sub": "${RefundsTopic}"}]
    # Outside the loop a Ref to the same name is another thing (a parameter or a resource): untouched.
    assert resources["Kept"]["Properties"]["QueueName"] == {"Ref": "Queue"}


def test_loops_nest_and_ampersand_keeps_only_alphanumerics() -> None:
    expanded = expand(
        template(
            {
                "Fn::ForEach::Machines": [
                    "Machine",
                    ["Transfer", "Follow-Up"],
                    {
                        "Fn::ForEach::Metrics": [
                            "Metric",
                            ["ExecutionsFailed", "ExecutionsTimedOut"],
                            {"&{Machine}${Metric}": {"Type": "Alarm", "Properties": {"M": "${Machine}"}}},
                        ]
                    },
                ]
            }
        )
    )
    assert sorted(expanded["Resources"]) == [
        "FollowUpExecutionsFailed",
        "FollowUpExecutionsTimedOut",
        "TransferExecutionsFailed",
        "TransferExecutionsTimedOut",
    ]
    assert expanded["Resources"]["FollowUpExecutionsFailed"]["Properties"] == {"M": "Follow-Up"}


def test_a_loop_inside_properties_and_a_collection_from_a_comma_delimited_list() -> None:
    source = template(
        {
            "Bucket": {
                "Type": "AWS::S3::Bucket",
                "Properties": {"Tags": {"Fn::ForEach::Tags": ["T", {"Ref": "Names"}, {"${T}": "v-${T}"}]}},
            }
        },
        Parameters={"Names": {"Type": "CommaDelimitedList", "Default": "a, b"}},
    )
    assert expand(source)["Resources"]["Bucket"]["Properties"]["Tags"] == {"a": "v-a", "b": "v-b"}
    assert expand(source, {"Names": "c"})["Resources"]["Bucket"]["Properties"]["Tags"] == {"c": "v-c"}


@pytest.mark.parametrize(
    "resources",
    [
        {"Fn::ForEach::L": ["X", ["A", "A"], {"${X}Q": {"Type": "AWS::SQS::Queue"}}]},  # made twice
        {"AQ": {"Type": "AWS::SQS::Queue"}, "Fn::ForEach::L": ["X", ["A"], {"${X}Q": {"Type": "AWS::SQS::Queue"}}]},
        {"Fn::ForEach::L": ["X", ["A"], {"Q": {"Type": "AWS::SQS::Queue"}}]},  # the key does not use X
        {"Fn::ForEach::L": ["X-Y", ["A"], {"${X-Y}Q": {"Type": "AWS::SQS::Queue"}}]},
        {"Fn::ForEach::L": ["X", {"Ref": "Nothing"}, {"${X}Q": {"Type": "AWS::SQS::Queue"}}]},
        {"Fn::ForEach::L": ["X", ["A"]]},
    ],
)
def test_loops_cloudformation_refuses_are_refused(resources: dict[str, Any]) -> None:
    with pytest.raises(InvalidForEach):
        expand(template(resources))


def test_a_loop_without_the_transform_is_refused_and_a_plain_template_is_unchanged() -> None:
    loop = {"Fn::ForEach::L": ["X", ["A"], {"${X}Q": {"Type": "AWS::SQS::Queue"}}]}
    with pytest.raises(InvalidForEach):
        expand({"Transform": "AWS::Serverless-2016-10-31", "Resources": loop})
    plain = {"Transform": "AWS::Serverless-2016-10-31", "Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}
    assert expand(plain) == plain


def test_template_yaml_expands_to_the_resources_sam_cli_expands_it_to() -> None:
    """SAM CLI's own AWS::LanguageExtensions processing (what `sam build` runs with language_extensions on) makes
    the same resources of the same types; ours keeps every other intrinsic function as written (SAM CLI's
    resolves parameters to their defaults, which is not what CloudFormation deploys)."""
    if not SAM_PYTHON.exists():
        pytest.fail(f"no {SAM_PYTHON}: run `make install`")
    script = (
        "import json, sys\n"
        "from samtranslator.yaml_helper import yaml_parse\n"
        "from samcli.lib.cfn_language_extensions.sam_integration import expand_language_extensions\n"
        "template = yaml_parse(open(sys.argv[1]).read())\n"
        "result = expand_language_extensions(template, enabled=True)\n"
        "print(json.dumps({k: v['Type'] for k, v in result.expanded_template['Resources'].items()}))\n"
    )
    answer = subprocess.run(
        [str(SAM_PYTHON), "-c", script, str(TEMPLATE_PATH)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    theirs = json.loads(answer.stdout)
    ours = load_template()["Resources"]
    assert {k: v["Type"] for k, v in ours.items()} == theirs
    raw = load_template(expanded=False)
    assert any(key.startswith("Fn::ForEach::") for key in raw["Resources"])  # the template does use loops
    assert ours["SweeperLogGroup"]["Properties"] == {
        "LogGroupName": {"Fn::Sub": "/aws/lambda/${SweeperFunction}"},
        "RetentionInDays": {"Ref": "LogRetentionDays"},
    }
