"""IAM for the local stack, where moto can judge it.

- **Roles** are the ones CloudFormation would create from the SAM-transformed template: each function's and
  state machine's inline policies, resolved against local names. (The AWS-managed policies SAM attaches,
  AWSLambdaBasicExecutionRole and AWSXrayWriteOnlyAccess, only allow CloudWatch Logs and X-Ray writes, which
  nothing calls locally; they are not attached.)
- **Credentials**: each execution environment gets session credentials for its function's role, as Lambda
  sets them; the Step Functions executor calls Lambda and DynamoDB with its state machine's role. The local
  stack's own clients (tests, CLI) use a local administrator with a fixed key, printed by ``holdline local up``.
- **Enforcement**: moto's IAM authorization is switched on (every request is signed-checked and evaluated
  against the caller's policies). moto evaluates each request against one resource, which it only computes
  for a few services; :func:`install_authorization` teaches it the resources of the calls Holdline makes
  (DynamoDB tables and indexes, Lambda functions, Step Functions state machines and executions, EventBridge
  buses) and Lambda's IAM action names (the ``Invoke`` operation is the ``lambda:InvokeFunction`` action).

Known gaps (tests/functional/test_local_iam.py names them): moto evaluates ``Condition`` keys only for
role trust policies; a request that touches several resources (``BatchWriteItem`` over two tables, one
``PutEvents`` to two buses) is judged on the first; the Connect stand-in does not check credentials.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

ADMIN_USER = "holdline-local-admin"
#: Fixed so that the README's AWS CLI examples work as written against ``holdline local up``.
ADMIN_ACCESS_KEY_ID = "AKIAHOLDLINELOCAL001"
ADMIN_SECRET_ACCESS_KEY = "holdline-local-admin-secret-not-for-aws"
PARTITION = "aws"

ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}

#: Lambda's API operations whose IAM action has another name ("Actions, resources, and condition keys for
#: AWS Lambda", https://docs.aws.amazon.com/service-authorization/latest/reference/list_awslambda.html).
LAMBDA_IAM_ACTIONS = {"Invoke": "InvokeFunction", "InvokeWithResponseStream": "InvokeFunction"}


def _iam_backend(account_id: str) -> Any:
    from moto.iam.models import iam_backends

    return iam_backends[account_id][PARTITION]


def create_admin(iam: Any, account_id: str) -> None:
    """A user allowed everything, with the fixed local key (created while enforcement is still off)."""
    iam.create_user(UserName=ADMIN_USER)
    iam.put_user_policy(UserName=ADMIN_USER, PolicyName="LocalAdministrator", PolicyDocument=json.dumps(ADMIN_POLICY))
    generated = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]["AccessKeyId"]
    backend = _iam_backend(account_id)
    key = backend.access_keys.pop(generated)
    key.access_key_id = ADMIN_ACCESS_KEY_ID
    key.secret_access_key = ADMIN_SECRET_ACCESS_KEY
    backend.access_keys[ADMIN_ACCESS_KEY_ID] = key


def admin_credentials() -> dict[str, str]:
    return {"aws_access_key_id": ADMIN_ACCESS_KEY_ID, "aws_secret_access_key": ADMIN_SECRET_ACCESS_KEY}


def create_role(iam: Any, name: str, properties: Mapping[str, Any]) -> str:
    """An AWS::IAM::Role (already resolved) with its inline policies; returns its ARN."""
    arn: str = iam.create_role(
        RoleName=name, AssumeRolePolicyDocument=json.dumps(properties.get("AssumeRolePolicyDocument", {}))
    )["Role"]["Arn"]
    for policy in properties.get("Policies", []):
        # SAM writes no Version; IAM then assumes 2008-10-17, which moto's validator refuses. Our policies use
        # no policy variables, the only thing the versions treat differently.
        document = {"Version": "2012-10-17", **policy["PolicyDocument"]}
        iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))
    return arn


class RoleCredentials:
    """Session credentials for a role (one session per role, reused), as Lambda puts them in the environment."""

    def __init__(self, account_id: str, region: str) -> None:
        self._account_id = account_id
        self._region = region
        self._sessions: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def __call__(self, role_arn: str | None) -> dict[str, str]:
        if not role_arn:
            raise ValueError("a function needs an execution role")
        with self._lock:
            if role_arn not in self._sessions:
                from moto.sts.models import sts_backends

                assumed = sts_backends[self._account_id][PARTITION].assume_role(
                    region_name=self._region,
                    role_session_name=role_arn.rsplit("/", 1)[-1][:64],
                    role_arn=role_arn,
                    policy="",
                    duration=43200,
                    external_id="",
                )
                self._sessions[role_arn] = {
                    "AWS_ACCESS_KEY_ID": assumed.access_key_id,
                    "AWS_SECRET_ACCESS_KEY": assumed.secret_access_key,
                    "AWS_SESSION_TOKEN": assumed.session_token,
                }
            return dict(self._sessions[role_arn])


def role_allows(account_id: str, role_arn: str, action: str, resource: str) -> bool:
    """Does the role's own policy allow ``action`` on ``resource``? (For what AWS services do with a role on
    your behalf, such as Lambda writing an async invocation record to its destination.)"""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    backend = _iam_backend(account_id)
    name = role_arn.rsplit("/", 1)[-1]
    documents = [backend.get_role_policy(name, policy)[1] for policy in backend.list_role_policies(name)]
    results = [IAMPolicy(document).is_action_permitted(action, resource) for document in documents]
    return PermissionResult.DENIED not in results and PermissionResult.PERMITTED in results


def resource_policy_allows(
    policy: Mapping[str, Any] | None, *, service: str, action: str, resource: str, source_arn: str
) -> bool:
    """A resource-based policy (a Lambda function's permissions, an SQS queue policy) allowing an AWS service
    principal, with the ``aws:SourceArn`` condition AWS checks for it ("Using resource-based policies for
    Amazon EventBridge", https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html)."""
    import fnmatch

    allowed = False
    for statement in (policy or {}).get("Statement", []):
        principal = statement.get("Principal", {})
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        services = [services] if isinstance(services, str) else services
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = statement.get("Resource", "*")
        resources = [resources] if isinstance(resources, str) else resources
        if service not in services or not any(fnmatch.fnmatchcase(action, a) for a in actions):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in resources):
            continue
        if not _conditions_hold(statement.get("Condition", {}), source_arn):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = True
    return allowed


def _conditions_hold(conditions: Mapping[str, Any], source_arn: str) -> bool:
    import fnmatch

    for operator, keys in conditions.items():
        for key, expected in keys.items():
            if key.lower() != "aws:sourcearn":
                return False  # a condition we cannot judge locally: refuse, never allow by default
            values = [expected] if isinstance(expected, str) else expected
            if operator in {"ArnEquals", "StringEquals"}:
                if source_arn not in values:
                    return False
            elif operator in {"ArnLike", "StringLike"}:
                if not any(fnmatch.fnmatchcase(source_arn, v) for v in values):
                    return False
            else:
                return False
    return True


# ---- moto's enforcement ---------------------------------------------------------------------------------
def _json_body(response: Any) -> dict[str, Any]:
    if isinstance(response.body, dict):  # moto's DynamoDB handler has parsed it already
        return response.body
    try:
        body = json.loads(response.body or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _dynamodb_resource(response: Any) -> str:
    body = _json_body(response)
    table = body.get("TableName")
    if not table:
        transacted = [op.get("TableName") for item in body.get("TransactItems", []) for op in item.values()]
        tables = list(body.get("RequestItems", {})) + transacted
        table = tables[0] if tables else None
    if not table:
        return "*"
    arn = (
        table
        if str(table).startswith("arn:")
        else f"arn:aws:dynamodb:{response.region}:{response.current_account}:table/{table}"
    )
    return f"{arn}/index/{body['IndexName']}" if body.get("IndexName") else arn


def _dynamodb_streams_resource(response: Any) -> str:
    body = _json_body(response)
    # moto's shard iterators begin with their stream's ARN ("<stream ARN>|1|<id>").
    return str(body.get("StreamArn") or str(body.get("ShardIterator", "")).split("|", 1)[0] or "*")


def _lambda_resource(response: Any) -> str:
    parts = response.path.split("/")
    if "functions" not in parts or parts.index("functions") + 1 >= len(parts):
        return "*"
    name = unquote(parts[parts.index("functions") + 1])
    if name.startswith("arn:"):
        return ":".join(name.split(":")[:7])
    return f"arn:aws:lambda:{response.region}:{response.current_account}:function:{name}"


def _states_resource(response: Any) -> str:
    body = _json_body(response)
    return str(body.get("executionArn") or body.get("stateMachineArn") or "*")


def _events_resource(response: Any) -> str:
    body = _json_body(response)
    entries = body.get("Entries") or []
    bus = entries[0].get("EventBusName") if entries else body.get("EventBusName")
    if entries and not bus:
        bus = "default"
    if not bus:
        return "*"
    return (
        bus
        if bus.startswith("arn:")
        else f"arn:aws:events:{response.region}:{response.current_account}:event-bus/{bus}"
    )


def _lambda_authorize(self: Any, resource: str = "*") -> None:
    from moto.core.authorization import ActionAuthenticatorMixin

    operation = type(self)._get_action(self)
    self._get_action = lambda: LAMBDA_IAM_ACTIONS.get(operation, operation)
    try:
        ActionAuthenticatorMixin._authenticate_and_authorize_normal_action(self, resource)
    finally:
        del self._get_action


def _response_classes() -> dict[Any, Callable[[Any], str]]:
    from moto.awslambda.responses import LambdaResponse
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler
    from moto.events.responses import EventsHandler
    from moto.stepfunctions.responses import StepFunctionResponse

    return {
        DynamoHandler: _dynamodb_resource,
        DynamoDBStreamsHandler: _dynamodb_streams_resource,
        LambdaResponse: _lambda_resource,
        StepFunctionResponse: _states_resource,
        EventsHandler: _events_resource,
    }


#: Services whose APIs speak JSON: their AccessDenied must be JSON too (moto answers IAM denials in XML,
#: which botocore cannot read for them), with the message AWS gives.
_JSON_DENIALS = {
    "dynamodb": "AccessDeniedException",
    "states": "AccessDeniedException",
    "events": "AccessDeniedException",
    "lambda": "AccessDeniedException",
    "sqs": "AccessDenied",
}


def _check_signature(self: Any) -> None:
    """Not re-verified: moto recomputes SigV4 itself and gets it wrong for some requests without a body
    (Lambda's DeleteFunction). The access key still names the caller, and its policies are what is judged."""


def _check_action_permitted(self: Any, resource: str) -> None:
    self._holdline_resource = resource
    _saved["check"](self, resource)


def _raise_access_denied(self: Any) -> None:
    from moto.core.exceptions import JsonRESTError

    code = _JSON_DENIALS.get(self._service)
    if code is None:
        _saved["deny"](self)
        return
    resource = getattr(self, "_holdline_resource", "*")
    error = JsonRESTError(
        code,
        f"User: {self._access_key.arn} is not authorized to perform: {self._action} on resource: {resource} "
        f"because no identity-based policy allows the {self._action} action",
    )
    error.code = 403
    raise error


_saved: dict[str, Any] = {}


def install_authorization() -> None:
    """Turn moto's IAM enforcement on for every request from now on (process-wide)."""
    from moto import settings
    from moto.awslambda.responses import LambdaResponse
    from moto.iam.access_control import IAMRequest

    if not _saved:
        _saved.update(
            count=settings.INITIAL_NO_AUTH_ACTION_COUNT,
            check=IAMRequest.check_action_permitted,
            deny=IAMRequest._raise_access_denied,
            signature=IAMRequest.check_signature,
        )
    IAMRequest.check_signature = _check_signature  # type: ignore[method-assign]
    IAMRequest.check_action_permitted = _check_action_permitted  # type: ignore[method-assign]
    IAMRequest._raise_access_denied = _raise_access_denied  # type: ignore[method-assign]
    for cls, determine in _response_classes().items():
        cls._determine_resource = determine
    LambdaResponse._authenticate_and_authorize_normal_action = _lambda_authorize  # type: ignore[method-assign]
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0


def uninstall_authorization() -> None:
    from moto import settings
    from moto.awslambda.responses import LambdaResponse
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.iam.access_control import IAMRequest

    if not _saved:
        return
    settings.INITIAL_NO_AUTH_ACTION_COUNT = _saved.pop("count")
    IAMRequest.check_action_permitted = _saved.pop("check")  # type: ignore[method-assign]
    IAMRequest._raise_access_denied = _saved.pop("deny")  # type: ignore[method-assign]
    IAMRequest.check_signature = _saved.pop("signature")  # type: ignore[method-assign]
    for cls in _response_classes():
        if "_determine_resource" in cls.__dict__:
            del cls._determine_resource
    LambdaResponse._authenticate_and_authorize_normal_action = (  # type: ignore[method-assign]
        ActionAuthenticatorMixin._authenticate_and_authorize_normal_action
    )


@contextmanager
def enforcement_paused() -> Iterator[None]:
    """Setup work the local stack does as CloudFormation (never for a test's or a function's calls)."""
    from moto import settings

    previous = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
    try:
        yield
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = previous
