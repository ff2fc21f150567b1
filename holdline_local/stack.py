"""The embedded local stack: moto in server mode (a real HTTP endpoint speaking the AWS APIs) with its Step
Functions executor on, the sandbox bank beside it, and a local Lambda runtime that runs each function in
execution environments of its own (holdline_local/runtime/).

Everything is built from template.yaml as CloudFormation would build it after the Serverless transform
(holdline_local/template.py): each function, table, queue, rule and state machine is named by its logical
ID, each function and state machine has the role SAM makes for it, and moto's IAM enforcement judges every
call (holdline_local/iam.py). The local stack must be at least as strict as AWS: where it cannot be, the gap is
named in the code and in a test.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from boto3.dynamodb.types import TypeSerializer
from botocore.config import Config

from holdline_local import iam, moto_adapter
from holdline_local.connect_standin import ConnectStandIn
from holdline_local.event_targets import LambdaTargetDelivery, TargetRefused
from holdline_local.flows import function_placeholders
from holdline_local.iam import resource_policy_allows
from holdline_local.runtime import FunctionConfig, InvokeResult, LambdaRuntime
from holdline_local.runtime.async_invoke import AsyncInvoker, AsyncPolicy
from holdline_local.sandbox_bank import SandboxBank
from holdline_local.scheduler import Scheduler
from holdline_local.stream_pump import StreamMapping, StreamPump
from holdline_local.template import (
    REPO_ROOT,
    Stack,
    evaluate_conditions,
    read_stack,
    resolve,
    substitute_definition,
)
from holdline_local.xray import XRayDaemon

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
STACK_NAME = "holdline-local"
LOCAL_CONNECT_INSTANCE_ARN = f"arn:aws:connect:{REGION}:{ACCOUNT_ID}:instance/00000000-0000-4000-8000-000000000000"
SEED_DIR = REPO_ROOT / "holdline_local" / "seeds"
#: The functions' own interpreter: functions/requirements.txt + the Lambda runtime's boto3 + awslambdaric
#: (`make install` builds it), so a handler cannot import what its package would not have on AWS.
LAMBDA_PYTHON = REPO_ROOT / ".venv-lambda" / "bin" / "python"

# What the local stack's own process (tests, CLI) needs to reach the endpoint, as a developer's shell would.
_CLIENT_ENV = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCESS_KEY_ID": iam.ADMIN_ACCESS_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": iam.ADMIN_SECRET_ACCESS_KEY,
}
# Pseudo parameters, as CloudFormation resolves them in this account and Region.
_PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::Partition": "aws",
    "AWS::StackName": STACK_NAME,
    "AWS::URLSuffix": "amazonaws.com",
}


@dataclass
class LocalStack:
    """Start with :meth:`start` (or as a context manager); ``endpoint`` then speaks the AWS APIs."""

    time_scale: float = 0.02
    port: int = 0
    bank_port: int = 0
    log_level: str = "WARNING"
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)
    #: moto's IAM authorization on: every call is judged against its caller's role.
    enforce_iam: bool = True
    #: Lambda's concurrency limit for the account (AWS's default is 1000).
    account_concurrency: int = 1000
    #: This machine's cap of environments per function (beyond it an invocation waits for a warm one).
    max_environments: int = 8
    #: Function Timeouts and task TimeoutSeconds, scaled together (1.0: as deployed); the functions the Connect flow
    #: invokes keep theirs, as Connect's block limits do.
    timeout_scale: float = 1.0
    schedules: bool = True
    #: Write what the functions print to CloudWatch Logs (/aws/lambda/<function>), for `aws logs tail`.
    cloudwatch_logs: bool = False
    endpoint: str = ""
    bank: SandboxBank | None = None
    connect: ConnectStandIn | None = None
    runtime: LambdaRuntime | None = None
    async_invoker: AsyncInvoker | None = None
    bridge: moto_adapter.LambdaBridge | None = None
    names: dict[str, str] = field(default_factory=dict)  # logical ID -> ARN or name
    pump: StreamPump | None = None
    event_targets: LambdaTargetDelivery | None = None
    scheduler: Scheduler | None = None
    stack: Stack | None = None
    #: Invocation records Lambda could not write to a destination (the role may not, or it is gone).
    destination_failures: list[tuple[str, str, str]] = field(default_factory=list)
    _environments: dict[str, dict[str, str]] = field(default_factory=dict)
    _roles: dict[str, str] = field(default_factory=dict)  # function -> role ARN
    _credentials: iam.RoleCredentials | None = None
    _log_shipper: Any = None
    _server: Any = None
    _session: Any = field(default_factory=boto3.session.Session)
    _clients: dict[tuple[str, str | None, int], Any] = field(default_factory=dict)
    _clients_lock: threading.Lock = field(default_factory=threading.Lock)
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    # ---- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> LocalStack:
        from moto.server import ThreadedMotoServer  # heavy: only the local tooling pays for it

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.bank = SandboxBank(time_scale=self.time_scale)
        bank_url = self.bank.start(port=self.bank_port)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        # moto's Step Functions executor finds its own server through MOTO_PORT.
        self._set_env({**_CLIENT_ENV, "MOTO_PORT": str(port), "AWS_ENDPOINT_URL": self.endpoint})
        self._unset_env("AWS_SESSION_TOKEN", "AWS_PROFILE")
        self.connect = ConnectStandIn()
        connect_url = self.connect.start()
        self._credentials = iam.RoleCredentials(ACCOUNT_ID, REGION)
        self.runtime = LambdaRuntime(
            python=LAMBDA_PYTHON,
            region=REGION,
            credentials=self._credentials if self.enforce_iam else _static_credentials,
            local_variables={
                "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_ENDPOINT_URL_CONNECT": connect_url,
                "POWERTOOLS_TRACE_DISABLED": "true",
            },
            timeout_scale=self.timeout_scale,
            # The functions the Connect flow invokes keep their Timeout (LambdaRuntime.unscaled says why).
            unscaled=function_placeholders().values(),
            account_concurrency=self.account_concurrency,
            max_environments=self.max_environments,
        )
        self.async_invoker = AsyncInvoker(
            self.runtime, self._async_config, self._send_to_destination, time_scale=self.time_scale
        )
        self.bridge = moto_adapter.LambdaBridge(self.runtime, self.async_invoker)
        moto_adapter.install(
            self.bridge,
            self.time_scale,
            endpoint=self.endpoint,
            credentials=self._credentials if self.enforce_iam else None,
        )
        moto_adapter.set_timeout_scale(self.timeout_scale)
        try:
            self._build(bank_url)
        except BaseException:
            self.stop()
            raise
        if self.enforce_iam:
            iam.install_authorization()
        if self.schedules and self.scheduler is not None:
            self.scheduler.start()
        if self.cloudwatch_logs:
            from holdline_local.runtime.cloudwatch import LogShipper

            self._log_shipper = LogShipper(ACCOUNT_ID, REGION)
            self.runtime.log_sink = self._log_shipper
            self._log_shipper.start()
        return self

    def stop(self) -> None:
        for stoppable in (self.scheduler, self.pump, self.async_invoker, self._log_shipper):
            if stoppable is not None:
                stoppable.stop()
        self.scheduler = self.pump = self._log_shipper = None
        if self.runtime is not None:
            self.runtime.stop()
        iam.uninstall_authorization()
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self.bank is not None:
            self.bank.stop()
        if self.connect is not None:
            self.connect.stop()
        moto_adapter.uninstall()
        self._restore_env()
        self._clients.clear()
        _reset_function_caches()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- clients -----------------------------------------------------------------------------------------
    def client(self, service: str, *, role_arn: str | None = None, attempts: int = 2) -> Any:
        """A client of the local endpoint: the local administrator's, or a role's (``role_arn``). One per
        service, role and retry budget, reused (clients are thread-safe once made)."""
        key = (service, role_arn, attempts)
        with self._clients_lock:
            if key not in self._clients:
                if role_arn is not None:
                    assert self._credentials is not None
                    found = self._credentials(role_arn)
                    keys = {
                        "aws_access_key_id": found["AWS_ACCESS_KEY_ID"],
                        "aws_secret_access_key": found["AWS_SECRET_ACCESS_KEY"],
                        "aws_session_token": found["AWS_SESSION_TOKEN"],
                    }
                else:
                    keys = iam.admin_credentials()
                self._clients[key] = self._session.client(
                    service,
                    endpoint_url=self.endpoint,
                    region_name=REGION,
                    config=Config(retries={"total_max_attempts": attempts}, read_timeout=60, max_pool_connections=64),
                    **keys,
                )
            return self._clients[key]

    # ---- building from the template ----------------------------------------------------------------------
    def _set_env(self, values: Mapping[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def _unset_env(self, *keys: str) -> None:
        for key in keys:
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ.pop(key, None)

    def _restore_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def _build(self, bank_url: str) -> None:
        iam.create_admin(self.client("iam"), ACCOUNT_ID)
        defaults = read_stack().parameters
        parameters = {name: str(value) for name, value in defaults.items() if value is not None}
        parameters.update({"BankApiUrl": bank_url, "LogLevel": self.log_level, **self.parameter_overrides})
        # The local Connect stand-in is an instance too: follow-up tasks need one (the template's default is none).
        parameters["ConnectInstanceArn"] = parameters.get("ConnectInstanceArn") or LOCAL_CONNECT_INSTANCE_ARN
        self.stack = stack = read_stack(parameter_overrides=parameters)
        assert self.connect is not None
        self.connect.instance_ids.add(parameters["ConnectInstanceArn"].rsplit("instance/", 1)[-1])
        self.connect.contact_flow_ids.add(parameters.get("FollowUpContactFlowId", ""))
        refs: dict[str, str] = {**parameters, **_PSEUDO}
        attributes: dict[str, str] = {}
        conditions = dict(stack.conditions)

        def resolved(value: Any) -> Any:
            return resolve(value, refs, attributes, conditions)

        # Names and ARNs first (CloudFormation knows them before it creates anything that refers to them).
        for logical_id in stack.of_type("AWS::IAM::Role"):
            refs[logical_id] = logical_id
            attributes[f"{logical_id}.Arn"] = f"arn:aws:iam::{ACCOUNT_ID}:role/{logical_id}"
        for logical_id in stack.functions:
            refs[logical_id] = logical_id
            attributes[f"{logical_id}.Arn"] = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{logical_id}"
        for logical_id in stack.state_machines:
            arn = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{logical_id}"
            refs[logical_id] = attributes[f"{logical_id}.Arn"] = arn
            attributes[f"{logical_id}.Name"] = logical_id
        for logical_id in stack.of_type("AWS::Events::EventBus"):
            refs[logical_id] = attributes[f"{logical_id}.Name"] = logical_id
            attributes[f"{logical_id}.Arn"] = f"arn:aws:events:{REGION}:{ACCOUNT_ID}:event-bus/{logical_id}"
        for logical_id, props in stack.of_type("AWS::Events::Rule").items():
            bus = resolved(props.get("EventBusName", "default"))
            prefix = "" if bus == "default" else f"{bus}/"
            refs[logical_id] = logical_id
            attributes[f"{logical_id}.Arn"] = f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{prefix}{logical_id}"
        for table in stack.tables.values():
            stream_arn = self._create_table(table.logical_id, table.properties)
            refs[table.logical_id] = table.logical_id
            attributes[f"{table.logical_id}.Arn"] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{table.logical_id}"
            if stream_arn:
                attributes[f"{table.logical_id}.StreamArn"] = stream_arn
        sqs = self.client("sqs")
        for logical_id, props in stack.of_type("AWS::SQS::Queue").items():
            queue_attributes = {
                k: str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in props.items()
                if k in {"SqsManagedSseEnabled", "MessageRetentionPeriod", "VisibilityTimeout"}
            }
            refs[logical_id] = sqs.create_queue(QueueName=logical_id, Attributes=queue_attributes)["QueueUrl"]
            attributes[f"{logical_id}.Arn"] = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{logical_id}"
            attributes[f"{logical_id}.QueueName"] = logical_id
        for logical_id, (kind, _) in stack.others.items():  # what nothing locally creates still has a name
            service = kind.split("::")[1].lower()
            refs.setdefault(logical_id, logical_id)
            attributes.setdefault(f"{logical_id}.Arn", f"arn:aws:{service}:{REGION}:{ACCOUNT_ID}:{logical_id}")

        events = self.client("events")
        for logical_id in stack.of_type("AWS::Events::EventBus"):
            events.create_event_bus(Name=logical_id)
        iam_client = self.client("iam")
        for logical_id, props in stack.of_type("AWS::IAM::Role").items():
            iam.create_role(iam_client, logical_id, resolved(props))
        self._create_functions(stack, resolved, attributes)
        sfn = self.client("stepfunctions")
        for machine in stack.state_machines.values():
            substitutions = {k: str(resolved(v)) for k, v in machine.substitutions.items()}
            definition = substitute_definition(machine.definition_path.read_text(), substitutions)
            sfn.create_state_machine(
                name=machine.logical_id,
                definition=definition,
                roleArn=attributes[f"{machine.role}.Arn"] if machine.role else "",
                type=machine.type,
            )
        for props in stack.of_type("AWS::SQS::QueuePolicy").values():
            policy = resolved(props)
            for url in policy["Queues"]:
                sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy["PolicyDocument"])})
        self._build_rules_and_mappings(stack, resolved, refs, attributes)
        self.names = {**refs, **{k: v for k, v in attributes.items() if k.endswith(".Arn")}}
        _reset_function_caches()

    def _create_functions(self, stack: Stack, resolved: Any, attributes: dict[str, str]) -> None:
        assert self.bridge is not None
        lambda_client = self.client("lambda")
        for spec in stack.functions.values():
            variables = {k: str(v) for k, v in resolved(dict(spec.environment)).items()}
            role_arn = attributes[f"{spec.role}.Arn"] if spec.role else ""
            lambda_client.create_function(
                FunctionName=spec.logical_id,
                Runtime="python3.11",
                Role=role_arn,
                Handler=spec.handler,
                Code={"ZipFile": _placeholder_zip()},
                Timeout=spec.timeout,
                MemorySize=spec.memory_mb,
                Environment={"Variables": variables},
                TracingConfig={"Mode": spec.tracing},
            )
            if spec.reserved_concurrency is not None:
                lambda_client.put_function_concurrency(
                    FunctionName=spec.logical_id, ReservedConcurrentExecutions=spec.reserved_concurrency
                )
            self.bridge.serve_code_from(spec.logical_id, spec.code_uri)
            self._environments[spec.logical_id] = variables
            self._roles[spec.logical_id] = role_arn
        for props in stack.of_type("AWS::Lambda::EventInvokeConfig").values():
            config = resolved(props)
            lambda_client.put_function_event_invoke_config(
                FunctionName=config["FunctionName"],
                **{
                    k: config[k]
                    for k in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")
                    if k in config
                },
            )
        for logical_id, props in stack.of_type("AWS::Lambda::Permission").items():
            permission = self._resolved_in_scope(logical_id, props, resolved)
            extra = {k: permission[k] for k in ("SourceArn", "SourceAccount") if k in permission}
            lambda_client.add_permission(
                FunctionName=str(permission["FunctionName"]).rsplit(":", 1)[-1],
                StatementId=logical_id,
                Action=permission["Action"],
                Principal=permission["Principal"],
                **extra,
            )

    def _resolved_in_scope(self, logical_id: str, props: Mapping[str, Any], resolved: Any) -> Any:
        """A resource of the stack, or of a nested stack (``<Application>.<LogicalId>``), whose intrinsics name
        the nested template's parameters: those are what the parent passes, resolved in the parent's scope."""
        application, _, _ = logical_id.rpartition(".")
        if not application:
            return resolved(props)
        assert self.stack is not None
        spec = self.stack.nested[application]
        parameters = {name: str(resolved(value)) for name, value in spec.parameters.items()}
        defaults = {
            name: str(p["Default"]) for name, p in spec.template.get("Parameters", {}).items() if "Default" in p
        }
        scope = {**defaults, **parameters, **_PSEUDO}
        conditions = evaluate_conditions(spec.template, scope)
        return resolve(props, scope, {}, conditions)

    def _create_table(self, name: str, properties: Mapping[str, Any]) -> str | None:
        ddb = self.client("dynamodb")
        extra: dict[str, Any] = {}
        if properties.get("GlobalSecondaryIndexes"):
            extra["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
        if properties.get("StreamSpecification"):
            extra["StreamSpecification"] = {"StreamEnabled": True, **properties["StreamSpecification"]}
        created = ddb.create_table(
            TableName=name,
            KeySchema=properties["KeySchema"],
            AttributeDefinitions=properties["AttributeDefinitions"],
            BillingMode=properties.get("BillingMode", "PAY_PER_REQUEST"),
            **extra,
        )
        ttl = properties.get("TimeToLiveSpecification")
        if ttl:
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
        # Local sample rows, if any (e.g. the line configuration the flow looks up): seeds/<LogicalId>.json.
        seed = SEED_DIR / f"{name}.json"
        if seed.exists():
            serializer = TypeSerializer()
            for item in json.loads(seed.read_text()):
                ddb.put_item(TableName=name, Item={k: serializer.serialize(v) for k, v in item.items()})
        stream_arn: str | None = created["TableDescription"].get("LatestStreamArn")
        return stream_arn

    # ---- rules, schedules, stream mappings, destinations --------------------------------------------------
    def _build_rules_and_mappings(
        self, stack: Stack, resolved: Any, refs: dict[str, str], attributes: dict[str, str]
    ) -> None:
        events = self.client("events")
        for logical_id, raw in stack.of_type("AWS::Events::Rule").items():
            props = resolved(raw)
            rule: dict[str, Any] = {
                "Name": logical_id,
                "EventBusName": props.get("EventBusName", "default"),
                "State": props.get("State", "ENABLED"),
            }
            if "EventPattern" in props:
                rule["EventPattern"] = json.dumps(props["EventPattern"])
            if "ScheduleExpression" in props:
                rule["ScheduleExpression"] = props["ScheduleExpression"]
            events.put_rule(**rule)
            if props.get("Targets"):
                events.put_targets(Rule=logical_id, EventBusName=rule["EventBusName"], Targets=props["Targets"])
        queue_urls = {attributes[f"{q}.Arn"]: refs[q] for q in stack.of_type("AWS::SQS::Queue")}
        self.event_targets = LambdaTargetDelivery(
            self._hand_to_lambda, lambda: self.client("sqs"), self.time_scale, queue_urls, self._queue_policy
        )
        moto_adapter.install_event_targets(self.event_targets.deliver)
        self.scheduler = Scheduler(ACCOUNT_ID, REGION, self.time_scale)

        mappings = [
            StreamMapping.from_properties(logical_id, resolved(raw))
            for logical_id, raw in stack.of_type("AWS::Lambda::EventSourceMapping").items()
            if ":dynamodb:" in str(resolved(raw["EventSourceArn"]))
        ]
        if mappings:
            self.pump = StreamPump(self._streams_client, self._invoke_sync, self._send_as_function, mappings)
            self.pump.start()

    def _function(self, name: str) -> Any:
        return _lambda_backend().get_function(name)

    def config(self, function: str) -> FunctionConfig:
        """What the runtime runs for a function now (moto's record of it)."""
        assert self.bridge is not None
        return self.bridge.config_for(self._function(function))

    def _streams_client(self, function: str) -> Any:
        """A stream mapping reads with its function's role."""
        if not self.enforce_iam:
            return self.client("dynamodbstreams")
        return self.client("dynamodbstreams", role_arn=self._roles.get(function) or self.config(function).role_arn)

    def _invoke_sync(self, function: str, payload: bytes) -> InvokeResult:
        assert self.runtime is not None
        return self.runtime.invoke(self.config(function), payload)

    def _async_config(self, function: str) -> tuple[FunctionConfig, AsyncPolicy]:
        backend = _lambda_backend()
        try:
            config = backend.get_function_event_invoke_config(function)
        except Exception:
            config = {}
        destinations = config.get("DestinationConfig", {})
        policy = AsyncPolicy(
            maximum_retry_attempts=int(config.get("MaximumRetryAttempts", 2)),
            maximum_event_age_seconds=int(config.get("MaximumEventAgeInSeconds", 21600)),
            on_failure=destinations.get("OnFailure", {}).get("Destination") or None,
            on_success=destinations.get("OnSuccess", {}).get("Destination") or None,
        )
        return self.config(function), policy

    def _send_to_destination(self, destination: str, record: dict[str, Any], config: FunctionConfig) -> None:
        self._send_as_function(config.name, destination, json.dumps(record))

    def _send_as_function(self, function: str, destination: str, body: str) -> None:
        """Lambda writes invocation records with the function's execution role: a role that may not write
        to its destination loses the record (AWS counts it in DestinationDeliveryFailures)."""
        assert self.runtime is not None
        role = self._roles.get(function) or self.config(function).role_arn
        try:
            service = destination.split(":")[2]
            if service == "sqs":
                # Lambda knows the queue; only the send is the role's business (sqs:SendMessage).
                url = self.client("sqs").get_queue_url(QueueName=destination.rsplit(":", 1)[-1])["QueueUrl"]
                client = self.client("sqs", role_arn=role) if self.enforce_iam else self.client("sqs")
                client.send_message(QueueUrl=url, MessageBody=body)
            elif service == "events":
                client = self.client("events", role_arn=role) if self.enforce_iam else self.client("events")
                client.put_events(
                    Entries=[
                        {
                            "Source": "lambda",
                            "DetailType": "Lambda Function Invocation Result",
                            "Detail": body,
                            "EventBusName": destination,
                        }
                    ]
                )
            elif service == "lambda":
                client = self.client("lambda", role_arn=role) if self.enforce_iam else self.client("lambda")
                client.invoke(FunctionName=destination, InvocationType="Event", Payload=body.encode())
            else:
                raise ValueError(f"destination {destination} is not supported locally")
        except Exception as failure:
            self.runtime.log(function, "", "", f"destination delivery to {destination} failed: {failure}")
            self.destination_failures.append((function, destination, str(failure)))

    def _hand_to_lambda(self, rule_arn: str, function_arn: str, body: bytes) -> None:
        """EventBridge's asynchronous invoke of a rule's Lambda target."""
        assert self.async_invoker is not None and self.runtime is not None
        name = function_arn.rsplit(":", 1)[-1]
        try:
            function = self._function(name)
        except Exception as missing:
            raise TargetRefused("NO_RESOURCE", f"Function not found: {function_arn}") from missing
        policy = json.loads(function.policy.wire_format()) if function.policy.statements else None
        if isinstance(policy, dict) and "Policy" in policy:
            policy = json.loads(policy["Policy"]) if isinstance(policy["Policy"], str) else policy["Policy"]
        allowed = resource_policy_allows(
            policy,
            service="events.amazonaws.com",
            action="lambda:InvokeFunction",
            resource=function.function_arn,
            source_arn=rule_arn,
        )
        if not allowed:
            raise TargetRefused(
                "NO_PERMISSIONS", f"{name}'s resource policy does not let EventBridge invoke it from {rule_arn}"
            )
        self.runtime.check_refusal(name)
        self.async_invoker.submit(name, body)

    def _queue_policy(self, queue_arn: str) -> Mapping[str, Any] | None:
        from moto.sqs.models import sqs_backends

        queue = sqs_backends[ACCOUNT_ID][REGION].queues.get(queue_arn.rsplit(":", 1)[-1])
        raw = getattr(queue, "policy", None) if queue is not None else None
        return json.loads(raw) if isinstance(raw, str) else raw

    # ---- conveniences for tests and the CLI ------------------------------------------------------------
    def arn(self, logical_id: str) -> str:
        return self.names[f"{logical_id}.Arn"]

    def role_arn(self, logical_id: str) -> str:
        """The ARN of a role of the template (``TransferStateMachineRole``) or of a function's role."""
        return self._roles.get(logical_id) or self.names[f"{logical_id}.Arn"]

    def settle(self, timeout: float = 60) -> None:
        """Tests: until the stack's background work is done: rule deliveries handed to Lambda, Lambda's
        asynchronous queue empty, the stream mappings caught up (each can start the others, so repeat)."""
        assert self.event_targets is not None and self.async_invoker is not None
        deadline = time.monotonic() + timeout
        while True:
            before = sum(s.invocations for s in self.runtime.stats.values()) if self.runtime else 0
            self.event_targets.wait(max(0.0, deadline - time.monotonic()))
            self.async_invoker.wait(max(0.0, deadline - time.monotonic()))
            if self.pump is not None:
                self.pump.drain()
            after = sum(s.invocations for s in self.runtime.stats.values()) if self.runtime else 0
            if after == before or time.monotonic() > deadline:
                return

    def invocations(self) -> dict[str, int]:
        """Invocations per function so far (throttled ones are not invocations, as in Lambda's metrics)."""
        assert self.runtime is not None
        return {name: stats.invocations for name, stats in self.runtime.stats.items()}

    def environment(self, function: str) -> dict[str, str]:
        """A function's configured variables (Globals and its own, resolved): what the template gives it."""
        return dict(self._environments[function])

    def invoke(self, function: str, event: Mapping[str, Any]) -> Any:
        """Invoke a function through the Lambda API, as Connect or the CLI would."""
        answer = self.client("lambda").invoke(FunctionName=function, Payload=json.dumps(event).encode())
        payload = json.loads(answer["Payload"].read() or b"null")
        if answer.get("FunctionError"):
            raise RuntimeError(f"{function} failed: {payload}")
        return payload

    @contextmanager
    def tracing(self) -> Iterator[XRayDaemon]:
        """Tests: functions with active tracing are traced while inside, as on AWS, into an X-Ray daemon stand-in
        whose documents the test reads (what X-Ray would record). Idle environments are retired on the way in and
        out, so every traced invocation runs in an environment started with tracing on (and none after)."""
        assert self.runtime is not None
        daemon = XRayDaemon()
        self.runtime.xray_daemon = daemon.address
        self.runtime.discard_environments()
        try:
            yield daemon
        finally:
            self.runtime.xray_daemon = None
            self.runtime.discard_environments()
            daemon.stop()

    @contextmanager
    def as_function(self, function: str, overrides: Mapping[str, str] | None = None) -> Iterator[None]:
        """Run a handler in this process as the function would run: its own variables (and no other
        function's; ``overrides`` change some, as a configuration update would), its role's credentials.
        For tests that call a handler directly."""
        assert self._credentials is not None
        values = {**self.environment(function), **(overrides or {}), "AWS_LAMBDA_FUNCTION_NAME": function}
        if self.enforce_iam:
            values.update(self._credentials(self._roles[function]))
        others = {k for env in self._environments.values() for k in env} - set(values)
        saved = {k: os.environ.get(k) for k in set(values) | others}
        for key in others:
            os.environ.pop(key, None)
        os.environ.update(values)
        _reset_function_caches()
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            _reset_function_caches()


def _lambda_backend() -> Any:
    from moto.awslambda.utils import get_backend  # the no-Docker backend the local stack switched on

    return get_backend(ACCOUNT_ID, REGION)


def _static_credentials(role_arn: str | None) -> dict[str, str]:
    """Without IAM enforcement every environment gets the same placeholder keys."""
    return {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


def _placeholder_zip() -> bytes:
    """moto wants a code package; the runtime runs the template's functions from their CodeUri instead."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "Holdline local stack: code runs from the template's CodeUri.")
    return buffer.getvalue()


def _reset_function_caches() -> None:
    """Settings and boto3 clients are cached per container; handlers run in this process by a test are one."""
    try:
        from holdline import config
        from holdline.dal import aws
    except ImportError:  # pragma: no cover - the functions' package is not importable yet
        return
    from holdline.dal.connect_tasks import _client as connect_client

    clear_settings = getattr(config.get_settings, "cache_clear", None)  # a test may have put its own in place
    if clear_settings is not None:
        clear_settings()
    # boto3's default session keeps the first credentials it resolved: a new function is a new session.
    boto3.DEFAULT_SESSION = None
    aws.clients.cache_clear()  # the cache itself, even while a test has put a fault injector in its place
    connect_client.cache_clear()


@contextmanager
def local_stack(**options: Any) -> Iterator[LocalStack]:
    stack = LocalStack(**options)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
