"""The alarms can notify someone: the alarm topic is encrypted with a key whose policy lets every service that
publishes to it use it (checked on the template as CloudFormation creates it).

CloudWatch publishes an alarm to an encrypted topic only if the topic's KMS key policy allows
``cloudwatch.amazonaws.com`` ``kms:GenerateDataKey*`` and ``kms:Decrypt``; the AWS-managed ``alias/aws/sns``
key's policy cannot be changed, so alarms sent to a topic under it are lost ("Enable compatibility between
event sources from AWS services and encrypted topics",
https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services). The same
holds for EventBridge (``events.amazonaws.com``) if a rule targets the topic.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from holdline_local.iam import resource_policy_allows
from holdline_local.template import TransformFailed, transform

#: What SNS asks KMS for on behalf of a publisher of an encrypted topic.
PUBLISH_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"


@cache
def resources() -> dict[str, Any]:
    try:
        found: dict[str, Any] = transform()["Resources"]
    except TransformFailed as failure:
        pytest.fail(str(failure))
    return found


def topic_key() -> dict[str, Any]:
    """The AWS::KMS::Key of this template that encrypts AlarmTopic."""
    key = resources()["AlarmTopic"]["Properties"].get("KmsMasterKeyId")
    assert isinstance(key, dict), f"AlarmTopic is encrypted with {key!r}, not a key of this stack"
    logical_id = key["Fn::GetAtt"][0] if "Fn::GetAtt" in key else key.get("Ref")
    assert resources()[logical_id]["Type"] == "AWS::KMS::Key", logical_id
    properties: dict[str, Any] = resources()[logical_id]["Properties"]
    return properties


def allows(service: str, action: str) -> bool:
    return resource_policy_allows(
        topic_key()["KeyPolicy"], service=service, action=action, resource=KEY_ARN, source_arn=""
    )


def publishers() -> set[str]:
    """The service principals that publish to AlarmTopic: CloudWatch for alarms, EventBridge for rules."""
    found = set()
    topic = {"Ref": "AlarmTopic"}
    for resource in resources().values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::CloudWatch::Alarm" and topic in properties.get("AlarmActions", []):
            found.add("cloudwatch.amazonaws.com")
        if resource["Type"] == "AWS::Events::Rule" and any(t["Arn"] == topic for t in properties.get("Targets", [])):
            found.add("events.amazonaws.com")
    return found


def test_the_alarm_topic_is_encrypted_with_a_customer_managed_key() -> None:
    key = topic_key()
    assert key.get("EnableKeyRotation") is True
    assert key.get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT"  # SNS takes symmetric keys only


def test_every_publisher_of_the_alarm_topic_may_use_its_key() -> None:
    assert "cloudwatch.amazonaws.com" in publishers()  # the alarms do notify this topic
    for service in publishers():
        for action in PUBLISH_ACTIONS:
            assert allows(service, action), f"{service} may not {action} on the alarm topic's key"


def test_the_key_grants_no_more_than_publishing_and_stays_manageable() -> None:
    """Services get the two calls publishing needs, nothing that reads other data or manages the key; the
    account keeps IAM control of the key (CloudFormation refuses a key policy that locks everyone out)."""
    for service in ("cloudwatch.amazonaws.com", "events.amazonaws.com", "sns.amazonaws.com"):
        for action in (
            "kms:Encrypt",
            "kms:ReEncryptFrom",
            "kms:CreateGrant",
            "kms:PutKeyPolicy",
            "kms:ScheduleKeyDeletion",
        ):
            assert not allows(service, action), (service, action)
    statements = topic_key()["KeyPolicy"]["Statement"]
    root = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    assert any(
        s["Effect"] == "Allow" and s["Principal"] == {"AWS": root} and s["Action"] == "kms:*" for s in statements
    )
