"""The embedded local stack: moto in server mode (a real HTTP endpoint speaking the AWS APIs) with its Step
Functions executor on, the sandbox bank beside it, and Lambda tasks dispatched in-process to our handlers.

Everything is built from template.yaml: each function, table and state machine is named by its logical ID.
"""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from boto3.dynamodb.types import TypeSerializer
from botocore.config import Config

from holdline_local import moto_adapter
from holdline_local.connect_standin import ConnectStandIn
from holdline_local.event_targets import LambdaTargetDelivery
from holdline_local.sandbox_bank import SandboxBank
from holdline_local.stream_pump import StreamMapping, StreamPump
from holdline_local.template import REPO_ROOT, Stack, read_stack, resolve, substitute_definition

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
LOCAL_ROLE = "holdline-local"
LOCAL_CONNECT_INSTANCE_ARN = f"arn:aws:connect:{REGION}:{ACCOUNT_ID}:instance/00000000-0000-4000-8000-000000000000"
SEED_DIR = REPO_ROOT / "holdline_local" / "seeds"

# The variables a Lambda runtime sets, and what local runs need to reach the local endpoint.
_RUNTIME_ENV = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
    "POWERTOOLS_METRICS_DISABLED": "true",  # EMF lines would drown the demo's timeline
}


@dataclass
class LocalStack:
    """Start with :meth:`start` (or as a context manager); ``endpoint`` then speaks the AWS APIs."""

    time_scale: float = 0.02
    port: int = 0
    bank_port: int = 0
    log_level: str = "WARNING"
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)
    endpoint: str = ""
    bank: SandboxBank | None = None
    connect: ConnectStandIn | None = None
    dispatcher: moto_adapter.LambdaDispatcher = field(default_factory=moto_adapter.LambdaDispatcher)
    names: dict[str, str] = field(default_factory=dict)  # logical ID -> ARN or name
    pump: StreamPump | None = None
    event_targets: LambdaTargetDelivery | None = None
    _server: Any = None
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    # ---- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> LocalStack:
        from moto.server import ThreadedMotoServer  # heavy: only the local tooling pays for it

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        moto_adapter.install(self.dispatcher, self.time_scale)
        self.bank = SandboxBank(time_scale=self.time_scale)
        bank_url = self.bank.start(port=self.bank_port)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        # moto's Step Functions executor calls Lambda and DynamoDB through this port.
        self._set_env({**_RUNTIME_ENV, "MOTO_PORT": str(port), "AWS_ENDPOINT_URL": self.endpoint})
        self._build(read_stack(parameter_overrides=self.parameter_overrides), bank_url)
        return self

    def stop(self) -> None:
        if self.pump is not None:
            self.pump.stop()
            self.pump = None
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self.bank is not None:
            self.bank.stop()
        if self.connect is not None:
            self.connect.stop()
        moto_adapter.uninstall()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- clients -----------------------------------------------------------------------------------------
    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106
            config=Config(retries={"total_max_attempts": 2}, read_timeout=30),
        )

    # ---- building from the template ----------------------------------------------------------------------
    def _set_env(self, values: Mapping[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def _build(self, stack: Stack, bank_url: str) -> None:
        iam = self.client("iam")
        role_arn = iam.create_role(RoleName=LOCAL_ROLE, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        parameters = {name: str(value) for name, value in stack.parameters.items() if value is not None}
        parameters.update({"BankApiUrl": bank_url, "LogLevel": self.log_level, **self.parameter_overrides})
        # The local Connect stand-in is an instance too: follow-up tasks need one (the template's default is none).
        parameters["ConnectInstanceArn"] = parameters.get("ConnectInstanceArn") or LOCAL_CONNECT_INSTANCE_ARN
        refs: dict[str, str] = {**parameters, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT_ID}
        attributes: dict[str, str] = {}
        self._start_connect(parameters)

        for table in stack.tables.values():
            stream_arn = self._create_table(table.logical_id, table.properties)
            refs[table.logical_id] = table.logical_id
            attributes[f"{table.logical_id}.Arn"] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{table.logical_id}"
            if stream_arn:
                attributes[f"{table.logical_id}.StreamArn"] = stream_arn
        self._build_queues_and_buses(stack, refs, attributes)

        lambda_client = self.client("lambda")
        for spec in stack.functions.values():
            arn = lambda_client.create_function(
                FunctionName=spec.logical_id,
                Runtime="python3.11",
                Role=role_arn,
                Handler=spec.handler,
                Code={"ZipFile": _placeholder_zip()},
                Timeout=spec.timeout,
            )["FunctionArn"]
            refs[spec.logical_id] = spec.logical_id
            attributes[f"{spec.logical_id}.Arn"] = arn
            self.dispatcher.register(
                moto_adapter.LocalFunction(spec.logical_id, spec.handler, spec.code_uri, spec.timeout, arn)
            )

        sfn = self.client("stepfunctions")
        for machine in stack.state_machines.values():
            substitutions = {k: str(resolve(v, refs, attributes)) for k, v in machine.substitutions.items()}
            definition = substitute_definition(machine.definition_path.read_text(), substitutions)
            arn = sfn.create_state_machine(
                name=machine.logical_id, definition=definition, roleArn=role_arn, type=machine.type
            )["stateMachineArn"]
            refs[machine.logical_id] = arn
            attributes[f"{machine.logical_id}.Arn"] = arn

        self._build_rules_and_mappings(stack, refs, attributes)

        # Functions' environments last: they may Ref the state machine.
        environments = {
            spec.logical_id: {k: str(resolve(v, refs, attributes)) for k, v in spec.environment.items()}
            for spec in stack.functions.values()
        }
        self._set_env(moto_adapter.environment_union(environments))
        self.names = {**refs, **{k: v for k, v in attributes.items() if k.endswith(".Arn")}}
        _reset_function_caches()

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

    def _start_connect(self, parameters: Mapping[str, str]) -> None:
        """moto has no StartTaskContact: a stand-in serves it, reached through boto3's per-service endpoint."""
        instance_arn = parameters.get("ConnectInstanceArn", "")
        self.connect = ConnectStandIn(
            instance_ids={instance_arn.rsplit("instance/", 1)[-1]},
            contact_flow_ids={parameters.get("FollowUpContactFlowId", "")},
        )
        self._set_env({"AWS_ENDPOINT_URL_CONNECT": self.connect.start()})

    # ---- queues, buses, rules, stream mappings (issue 5) -------------------------------------------------
    def _build_queues_and_buses(self, stack: Stack, refs: dict[str, str], attributes: dict[str, str]) -> None:
        """Every AWS::SQS::Queue and AWS::Events::EventBus, named by logical ID (Ref: URL and name)."""
        sqs = self.client("sqs")
        for logical_id, props in stack.of_type("AWS::SQS::Queue").items():
            queue_attributes = {
                k: str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in props.items()
                if k in {"SqsManagedSseEnabled", "MessageRetentionPeriod", "VisibilityTimeout"}
            }
            url = sqs.create_queue(QueueName=logical_id, Attributes=queue_attributes)["QueueUrl"]
            refs[logical_id] = url
            attributes[f"{logical_id}.Arn"] = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{logical_id}"
            attributes[f"{logical_id}.QueueName"] = logical_id
        events = self.client("events")
        for logical_id in stack.of_type("AWS::Events::EventBus"):
            attributes[f"{logical_id}.Arn"] = events.create_event_bus(Name=logical_id)["EventBusArn"]
            refs[logical_id] = logical_id

    def _build_rules_and_mappings(self, stack: Stack, refs: dict[str, str], attributes: dict[str, str]) -> None:
        events = self.client("events")
        for logical_id, raw in stack.of_type("AWS::Events::Rule").items():
            props = resolve(raw, refs, attributes)
            rule: dict[str, Any] = {"Name": logical_id, "EventBusName": props.get("EventBusName", "default")}
            if "EventPattern" in props:
                rule["EventPattern"] = json.dumps(props["EventPattern"])
            if "ScheduleExpression" in props:  # stored, never fired: moto runs no schedules (invoke by hand)
                rule["ScheduleExpression"] = props["ScheduleExpression"]
            attributes[f"{logical_id}.Arn"] = events.put_rule(**rule)["RuleArn"]
            refs[logical_id] = logical_id
            if props.get("Targets"):
                events.put_targets(Rule=logical_id, EventBusName=rule["EventBusName"], Targets=props["Targets"])

        queue_urls = {attributes[f"{q}.Arn"]: refs[q] for q in stack.of_type("AWS::SQS::Queue")}
        invoke_configs = {
            spec.logical_id: resolve(spec.event_invoke_config, refs, attributes) for spec in stack.functions.values()
        }
        self.event_targets = LambdaTargetDelivery(
            self.dispatcher, lambda: self.client("sqs"), self.time_scale, invoke_configs, queue_urls
        )
        moto_adapter.install_event_targets(self.event_targets.deliver)

        mappings = [
            StreamMapping.from_properties(logical_id, resolve(raw, refs, attributes), queue_urls)
            for logical_id, raw in stack.of_type("AWS::Lambda::EventSourceMapping").items()
            if ":dynamodb:" in str(resolve(raw["EventSourceArn"], refs, attributes))
        ]
        if mappings:
            self.pump = StreamPump(self.client("dynamodbstreams"), self.client("sqs"), self.dispatcher, mappings)
            self.pump.start()

    # ---- conveniences for tests and the CLI ------------------------------------------------------------
    def arn(self, logical_id: str) -> str:
        return self.names[f"{logical_id}.Arn"]

    def invoke(self, function: str, event: Mapping[str, Any]) -> Any:
        """Invoke a function through the Lambda API, as Connect or the CLI would."""
        answer = self.client("lambda").invoke(FunctionName=function, Payload=json.dumps(event).encode())
        payload = json.loads(answer["Payload"].read() or b"null")
        if answer.get("FunctionError"):
            raise RuntimeError(f"{function} failed: {payload}")
        return payload


def _placeholder_zip() -> bytes:
    """moto wants a code package; the adapter runs the real code from CodeUri instead."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "Holdline local stack: code runs from the template's CodeUri.")
    return buffer.getvalue()


def _reset_function_caches() -> None:
    """Settings and boto3 clients are cached per container; a new local stack is a new container."""
    try:
        from holdline.config import get_settings
        from holdline.dal.aws import client
    except ImportError:  # pragma: no cover - the functions' package is not importable yet
        return
    from holdline.dal.connect_tasks import _client as connect_client

    get_settings.cache_clear()
    client.cache_clear()
    connect_client.cache_clear()


@contextmanager
def local_stack(**options: Any) -> Iterator[LocalStack]:
    stack = LocalStack(**options)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
