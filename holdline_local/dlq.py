"""``holdline dlq list|show|redrive``: inspect and replay dead letters, locally or on a deployed stack.

Which queues are dead-letter queues, and of what, comes from template.yaml (no hand-kept list):

- ``eventbridge-target``: a rule target's DeadLetterConfig. The body is the event; AWS sets the message
  attributes RULE_ARN, TARGET_ARN, ERROR_CODE, ERROR_MESSAGE, EXHAUSTED_RETRY_CONDITION, RETRY_ATTEMPTS.
  Replay: invoke the TARGET_ARN function with the event (synchronously, so we know it worked), or put the
  event back on its rule's bus for any other target (other rules on that bus see it again: consumers
  dedupe on detail.dedupeKey).
- ``lambda-async``: a function's EventInvokeConfig OnFailure destination. The body is Lambda's invocation
  record (requestContext, requestPayload, responsePayload); no attributes. Replay: invoke the function
  with requestPayload.
- ``stream-esm``: an event source mapping's OnFailure destination. The body holds DDBStreamBatchInfo
  (shard, sequence range) but not the records. Replay: read that range back from the stream (kept 24 h)
  and invoke the mapping's function with it.
- ``sqs-source``: a queue that is another queue's RedrivePolicy target. Replay: SQS's own
  StartMessageMoveTask, never a hand-written loop.

Every consumer is idempotent (conditional writes on the tracker), so a replay changes nothing twice. A
message is deleted only after its replay succeeded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from holdline_local.template import read_stack

ATTRIBUTE_NAMES = (
    "RULE_ARN",
    "TARGET_ARN",
    "ERROR_CODE",
    "ERROR_MESSAGE",
    "EXHAUSTED_RETRY_CONDITION",
    "RETRY_ATTEMPTS",
)


@dataclass(frozen=True)
class DeadLetterQueue:
    logical_id: str
    kind: str  # eventbridge-target | lambda-async | stream-esm | sqs-source | needs-a-person
    source: str  # the rule, function, mapping or queue whose failures land here


KIND_TAG = "holdline:dead-letter-kind"


def _arn_target(value: Any) -> str | None:
    """The logical ID of ``!GetAtt X.Arn``."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    return None


def discover(parameter_overrides: Mapping[str, str] | None = None) -> list[DeadLetterQueue]:
    stack = read_stack(parameter_overrides=parameter_overrides)
    found: dict[str, DeadLetterQueue] = {}
    for rule_id, props in stack.of_type("AWS::Events::Rule").items():
        for target in props.get("Targets", []):
            queue = _arn_target(target.get("DeadLetterConfig", {}).get("Arn"))
            if queue:
                found.setdefault(queue, DeadLetterQueue(queue, "eventbridge-target", rule_id))
    for spec in stack.functions.values():
        destination = spec.event_invoke_config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        queue = _arn_target(destination)
        if queue:
            found.setdefault(queue, DeadLetterQueue(queue, "lambda-async", spec.logical_id))
    for mapping_id, props in stack.of_type("AWS::Lambda::EventSourceMapping").items():
        queue = _arn_target(props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"))
        if queue:
            found.setdefault(queue, DeadLetterQueue(queue, "stream-esm", mapping_id))
    for queue_id, props in stack.of_type("AWS::SQS::Queue").items():
        queue = _arn_target((props.get("RedrivePolicy") or {}).get("deadLetterTargetArn"))
        if queue:
            found[queue] = DeadLetterQueue(queue, "sqs-source", queue_id)
        # Dead letters our own code writes (not AWS): tagged, since nothing in the template points at them.
        tags = {t.get("Key"): t.get("Value") for t in props.get("Tags", []) if isinstance(t, dict)}
        if tags.get(KIND_TAG) == "needs-a-person":
            found.setdefault(queue_id, DeadLetterQueue(queue_id, "needs-a-person", queue_id))
    return sorted(found.values(), key=lambda q: q.logical_id)


def normalized_attributes(body: Mapping[str, Any], attributes: Mapping[str, Any]) -> dict[str, str]:
    """One vocabulary for every kind of dead letter: EventBridge's attribute names."""
    if attributes:
        return {name: str(attributes[name]["StringValue"]) for name in ATTRIBUTE_NAMES if name in attributes}
    context = body.get("requestContext", {}) if isinstance(body, Mapping) else {}
    if not context:
        return {}
    response = body.get("responsePayload") or {}
    count = int(context.get("approximateInvokeCount", 1))
    info = body.get("DDBStreamBatchInfo", {})
    out = {
        "TARGET_ARN": str(context.get("functionArn", "")),
        "ERROR_CODE": str(
            (response.get("errorType") if isinstance(response, dict) else None)
            or body.get("responseContext", {}).get("functionError", "")
        ),
        "ERROR_MESSAGE": str(response.get("errorMessage", "") if isinstance(response, dict) else ""),
        "EXHAUSTED_RETRY_CONDITION": str(context.get("condition", "")),
        "RETRY_ATTEMPTS": str(max(0, count - 1)),
    }
    if info:
        out["RULE_ARN"] = str(info.get("streamArn", ""))  # the source, in the rule's place
    return out


class DeadLetters:
    """Operations on the stack's DLQs; ``client(service)`` gives boto3 clients for the stack's endpoint."""

    def __init__(
        self,
        client: Callable[[str], Any],
        queue_url: Callable[[str], str],
        queues: list[DeadLetterQueue] | None = None,
    ) -> None:
        self._client = client
        self._queue_url = queue_url
        self.queues = {q.logical_id: q for q in (queues if queues is not None else discover())}

    def _queue(self, logical_id: str) -> DeadLetterQueue:
        if logical_id not in self.queues:
            raise KeyError(f"{logical_id} is not a dead-letter queue of this stack ({', '.join(self.queues)})")
        return self.queues[logical_id]

    def summary(self) -> list[dict[str, Any]]:
        sqs = self._client("sqs")
        rows = []
        for queue in self.queues.values():
            attributes = sqs.get_queue_attributes(
                QueueUrl=self._queue_url(queue.logical_id),
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            rows.append(
                {
                    "queue": queue.logical_id,
                    "kind": queue.kind,
                    "source": queue.source,
                    "messages": int(attributes.get("ApproximateNumberOfMessages", 0)),
                    "inFlight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
                }
            )
        return rows

    def _receive(self, logical_id: str, max_messages: int, visibility: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        seen: set[str] = set()
        sqs = self._client("sqs")
        while len(messages) < max_messages:
            answer = sqs.receive_message(
                QueueUrl=self._queue_url(logical_id),
                MaxNumberOfMessages=min(10, max_messages - len(messages)),
                MessageAttributeNames=["All"],
                VisibilityTimeout=visibility,
                WaitTimeSeconds=0,
            )
            # A peek (visibility 0) sees the same messages again: stop at the first round with nothing new.
            batch = [m for m in answer.get("Messages", []) if m["MessageId"] not in seen]
            if not batch:
                break
            seen.update(m["MessageId"] for m in batch)
            messages.extend(batch)
        return messages

    def show(self, logical_id: str, max_messages: int = 10) -> list[dict[str, Any]]:
        """Peek (the messages become visible again at once); account numbers never appear in our events."""
        self._queue(logical_id)
        shown = []
        for message in self._receive(logical_id, max_messages, visibility=0):
            body = _json(message.get("Body", ""))
            shown.append(
                {
                    "messageId": message["MessageId"],
                    "attributes": normalized_attributes(
                        body if isinstance(body, dict) else {}, message.get("MessageAttributes", {})
                    ),
                    "body": body,
                }
            )
        return shown

    def redrive(self, logical_id: str, max_messages: int = 100) -> dict[str, Any]:
        queue = self._queue(logical_id)
        sqs = self._client("sqs")
        url = self._queue_url(logical_id)
        if queue.kind == "needs-a-person":
            raise ValueError(
                f"{logical_id} holds what automation already gave up on (a task Connect refused, a rule failure "
                "that cannot be re-attempted): fix the cause, then act on each message; nothing to replay"
            )
        if queue.kind == "sqs-source":
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            task = sqs.start_message_move_task(SourceArn=arn)  # back to the queue(s) it came from
            return {"queue": logical_id, "moveTask": task.get("TaskHandle"), "replayed": 0, "failed": 0}
        replayed = failed = 0
        errors: list[str] = []
        # Hidden for 5 minutes while we replay: a failed replay reappears later, a succeeded one is deleted.
        for message in self._receive(logical_id, max_messages, visibility=300):
            try:
                self._replay(queue, message)
            except Exception as exc:
                failed += 1
                errors.append(f"{message['MessageId']}: {exc}")
                continue
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            replayed += 1
        return {"queue": logical_id, "replayed": replayed, "failed": failed, "errors": errors}

    # ---- replay one message ------------------------------------------------------------------------------
    def _replay(self, queue: DeadLetterQueue, message: Mapping[str, Any]) -> None:
        body = _json(message.get("Body", ""))
        if queue.kind == "eventbridge-target":
            attributes = message.get("MessageAttributes", {})
            target = str(attributes.get("TARGET_ARN", {}).get("StringValue", ""))
            if ":lambda:" in target:
                self._invoke(target, body)
            else:
                rule_arn = str(attributes.get("RULE_ARN", {}).get("StringValue", ""))
                self._put_back(rule_arn, body)
        elif queue.kind == "lambda-async":
            self._invoke(body["requestContext"]["functionArn"], body["requestPayload"])
        elif queue.kind == "stream-esm":
            records = self._stream_records(body["DDBStreamBatchInfo"])
            answer = self._invoke(body["requestContext"]["functionArn"], {"Records": records})
            if isinstance(answer, dict) and answer.get("batchItemFailures"):
                raise RuntimeError(f"the function still fails: {answer['batchItemFailures']}")
        else:  # pragma: no cover - discover() makes no other kind
            raise ValueError(queue.kind)

    def _invoke(self, function: str, payload: Any) -> Any:
        answer = self._client("lambda").invoke(FunctionName=function, Payload=json.dumps(payload).encode())
        result = _json(answer["Payload"].read() or b"null")
        if answer.get("FunctionError"):
            raise RuntimeError(f"{function} failed again: {result}")
        return result

    def _put_back(self, rule_arn: str, event: Mapping[str, Any]) -> None:
        # arn:aws:events:region:account:rule/[bus/]name
        path = rule_arn.split(":rule/", 1)[-1].split("/")
        bus = path[0] if len(path) > 1 else "default"
        answer = self._client("events").put_events(
            Entries=[
                {
                    "Source": event["source"],
                    "DetailType": event["detail-type"],
                    "Detail": json.dumps(event["detail"]),
                    "Resources": event.get("resources", []),
                    "EventBusName": bus,
                }
            ]
        )
        if answer.get("FailedEntryCount"):
            raise RuntimeError(f"PutEvents refused the event: {answer['Entries']}")

    def _stream_records(self, info: Mapping[str, Any]) -> list[dict[str, Any]]:
        streams = self._client("dynamodbstreams")
        iterator = streams.get_shard_iterator(
            StreamArn=info["streamArn"],
            ShardId=info["shardId"],
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=str(info["startSequenceNumber"]),
        )["ShardIterator"]
        end = int(info["endSequenceNumber"])
        records: list[dict[str, Any]] = []
        while iterator:
            answer = streams.get_records(ShardIterator=iterator, Limit=100)
            batch = answer.get("Records", [])
            for record in batch:
                if int(record["dynamodb"]["SequenceNumber"]) > end:
                    return records
                change = dict(record["dynamodb"])
                created = change.get("ApproximateCreationDateTime")
                if created is not None and hasattr(created, "timestamp"):
                    change["ApproximateCreationDateTime"] = created.timestamp()
                records.append({**record, "dynamodb": change, "eventSourceARN": info["streamArn"]})
            if not batch:
                break
            iterator = answer.get("NextShardIterator")
        if not records:
            raise RuntimeError("the stream no longer holds these records (24 h retention): use the sweeper")
        return records


def render_summary(rows: list[dict[str, Any]]) -> str:
    """``holdline dlq list`` for a person: one aligned row per queue, the ones holding messages first."""
    headers = ("QUEUE", "KIND", "SOURCE", "MESSAGES", "IN FLIGHT")
    ordered = sorted(rows, key=lambda r: (-(r["messages"] + r["inFlight"]), r["queue"]))
    table = [headers] + [(r["queue"], r["kind"], r["source"], str(r["messages"]), str(r["inFlight"])) for r in ordered]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(widths[i]) if i < 3 else cell.rjust(widths[i]) for i, cell in enumerate(row))
        for row in table
    ]
    waiting = sum(r["messages"] + r["inFlight"] for r in rows)
    lines.append(f"{waiting} dead letter(s) waiting" + (": `holdline dlq show QUEUE` to look" if waiting else ""))
    return "\n".join(line.rstrip() for line in lines)


def _json(raw: str | bytes) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return raw


def local_queue_url(sqs: Any) -> Callable[[str], str]:
    """The local stack names every queue by its logical ID."""
    return lambda logical_id: str(sqs.get_queue_url(QueueName=logical_id)["QueueUrl"])


def stack_queue_url(cloudformation: Any, stack_name: str) -> Callable[[str], str]:
    """A deployed stack: a queue's physical ID (its URL) by logical ID, from CloudFormation."""
    cache: dict[str, str] = {}

    def lookup(logical_id: str) -> str:
        if logical_id not in cache:
            answer = cloudformation.describe_stack_resource(StackName=stack_name, LogicalResourceId=logical_id)
            cache[logical_id] = str(answer["StackResourceDetail"]["PhysicalResourceId"])
        return cache[logical_id]

    return lookup
