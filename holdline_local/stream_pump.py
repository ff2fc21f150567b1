"""DynamoDB Stream -> Lambda, the way an event source mapping does it, for the local stack.

moto records stream changes, but its own event source mapping would call the function synchronously inside
the write, ignore FilterCriteria and not run our code. So the local stack creates no ESM in moto; this pump
polls dynamodbstreams for each AWS::Lambda::EventSourceMapping of the template and invokes the function
through the local Lambda runtime ("Using AWS Lambda with Amazon DynamoDB",
https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html), honouring what matters to us: FilterCriteria
(same pattern syntax as EventBridge), BatchSize, ReportBatchItemFailures (retry from the reported record),
MaximumRetryAttempts, throttles (retried without counting an attempt), and the OnFailure destination (an
SQS message in the shape Lambda writes, sent with the function's role). Not emulated:
BisectBatchOnFunctionError (a failing batch is retried whole), parallelization, tumbling windows.

Each shard is read forward with the iterator the last read returned, at most one batch ahead, so catching
up a backlog costs one read per batch (the first version re-read up to 1,000 records per poll from the
checkpoint and consumed 25, which grew quadratically with the backlog).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moto.events.models import EventPattern

from holdline_local.runtime import InvokeResult, Throttled

#: (function name, payload) -> the runtime's result; raises Throttled at a concurrency limit.
Invoke = Callable[[str, bytes], InvokeResult]
#: (function name, destination ARN, message body) -> sends it with the function's role.
SendToDestination = Callable[[str, str, str], None]


@dataclass
class StreamMapping:
    logical_id: str
    stream_arn: str
    function: str
    batch_size: int = 100
    max_retries: int = 3
    report_item_failures: bool = False
    on_failure: str | None = None  # destination ARN
    patterns: Sequence[EventPattern] = ()
    # progress
    buffer: list[dict[str, Any]] = field(default_factory=list)
    iterators: dict[str, str] = field(default_factory=dict)  # shard id -> next iterator
    shard_of: dict[str, str] = field(default_factory=dict)  # sequence number -> shard id
    attempts: int = 0
    invocations: int = 0

    @classmethod
    def from_properties(cls, logical_id: str, props: Mapping[str, Any]) -> StreamMapping:
        filters = props.get("FilterCriteria", {}).get("Filters", [])
        destination = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        return cls(
            logical_id=logical_id,
            stream_arn=str(props["EventSourceArn"]),
            function=str(props["FunctionName"]).rsplit(":", 1)[-1],
            batch_size=int(props.get("BatchSize", 100)),
            # -1 is "until the record expires" on AWS; locally a small bound keeps a broken test short.
            max_retries=max(0, int(props.get("MaximumRetryAttempts", 3))),
            report_item_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
            on_failure=str(destination) if destination else None,
            patterns=[EventPattern.load(f["Pattern"]) for f in filters],
        )

    def matches(self, record: Mapping[str, Any]) -> bool:
        return not self.patterns or any(p.matches_event(dict(record)) for p in self.patterns)  # type: ignore[arg-type]


class StreamPump:
    """Polls every mapping in a background thread; :meth:`drain` runs it to quiescence for tests."""

    def __init__(
        self,
        streams: Callable[[str], Any],
        invoke: Invoke,
        send: SendToDestination,
        mappings: Sequence[StreamMapping],
    ) -> None:
        # The mapping reads the stream with its function's execution role ("Lambda needs permission to read
        # the stream", https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html#events-dynamodb-permissions):
        # ``streams(function)`` is a dynamodbstreams client with that role's credentials.
        self._streams = streams
        self._invoke = invoke
        self._send = send
        self.mappings = list(mappings)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, interval: float = 0.2) -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    while self.poll():  # keep going while there is a backlog
                        if self._stop.is_set():
                            return
                except Exception:  # noqa: S112 - a local endpoint hiccup must not kill the pump
                    continue

        self._thread = threading.Thread(target=loop, name="stream-pump", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No delivery while inside (records wait in the stream, as when a mapping is disabled on AWS)."""
        with self._lock:
            yield

    def drain(self, max_rounds: int = 500) -> None:
        """Poll until no mapping has anything left to deliver (or retry)."""
        for _ in range(max_rounds):
            if not self.poll():
                return
        raise RuntimeError("stream pump did not settle")

    def poll(self) -> bool:
        """One batch per mapping; True if something was delivered, filtered out or retried."""
        with self._lock:
            return any([self._poll(mapping) for mapping in self.mappings])

    # ---- one mapping ---------------------------------------------------------------------------------------
    def _fill(self, mapping: StreamMapping) -> None:
        """Read forward until the buffer holds a batch (or the stream has nothing more)."""
        if len(mapping.buffer) >= mapping.batch_size:
            return
        streams = self._streams(mapping.function)
        if not mapping.iterators:
            shards = streams.describe_stream(StreamArn=mapping.stream_arn)["StreamDescription"]["Shards"]
            for shard in shards:
                mapping.iterators[shard["ShardId"]] = streams.get_shard_iterator(
                    StreamArn=mapping.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
        for shard_id, iterator in list(mapping.iterators.items()):
            want = mapping.batch_size - len(mapping.buffer)
            if want <= 0:
                return
            answer = streams.get_records(ShardIterator=iterator, Limit=want)
            mapping.iterators[shard_id] = answer["NextShardIterator"]
            for record in answer["Records"]:
                mapping.shard_of[record["dynamodb"]["SequenceNumber"]] = shard_id
                mapping.buffer.append(record)

    def _poll(self, mapping: StreamMapping) -> bool:
        self._fill(mapping)
        if not mapping.buffer:
            return False
        batch = mapping.buffer[: mapping.batch_size]
        converted = [_as_lambda_record(r, mapping.stream_arn) for r in batch]
        matched = [r for r in converted if mapping.matches(r)]
        if not matched:  # filtered out: consumed without an invocation, as on AWS
            self._consume(mapping, len(batch))
            return True
        try:
            failed_from = self._deliver(mapping, matched)
        except Throttled:
            return False  # retried at the next poll; a throttle is not an attempt
        if failed_from is None:
            self._consume(mapping, len(batch))
            return True
        mapping.attempts += 1
        if mapping.attempts <= mapping.max_retries:
            # Checkpoint just before the failed record: the next poll retries from it.
            index = next((i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] == failed_from), 0)
            del mapping.buffer[:index]
            return True
        self._on_failure(mapping, matched)
        self._consume(mapping, len(batch))
        return True

    @staticmethod
    def _consume(mapping: StreamMapping, count: int) -> None:
        for record in mapping.buffer[:count]:
            mapping.shard_of.pop(record["dynamodb"]["SequenceNumber"], None)
        del mapping.buffer[:count]
        mapping.attempts = 0

    def _deliver(self, mapping: StreamMapping, records: list[dict[str, Any]]) -> str | None:
        """Invoke; None on success, else the sequence number to retry from."""
        mapping.invocations += 1
        result = self._invoke(mapping.function, json.dumps({"Records": records}).encode())
        first = str(records[0]["dynamodb"]["SequenceNumber"])
        if result.function_error:
            return first
        answer = json.loads(result.payload or b"null")
        failures = (answer or {}).get("batchItemFailures") if mapping.report_item_failures else None
        if failures:
            identifiers = [str(f.get("itemIdentifier", "")) for f in failures]
            # An empty or unknown identifier fails the whole batch, as Lambda does.
            known = [i for i in identifiers if any(i == str(r["dynamodb"]["SequenceNumber"]) for r in records)]
            return min(known, key=int) if len(known) == len(identifiers) else first
        return None

    def _on_failure(self, mapping: StreamMapping, records: list[dict[str, Any]]) -> None:
        if not mapping.on_failure:
            return
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "version": "1.0",
            "timestamp": now,
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": mapping.function,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": mapping.attempts,
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "DDBStreamBatchInfo": {
                "shardId": mapping.shard_of.get(records[0]["dynamodb"]["SequenceNumber"], ""),
                "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": now,
                "approximateArrivalOfLastRecord": now,
                "batchSize": len(records),
                "streamArn": mapping.stream_arn,
            },
        }
        self._send(mapping.function, mapping.on_failure, json.dumps(body))


def _as_lambda_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    out = dict(record)
    change = dict(out.get("dynamodb", {}))
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        change["ApproximateCreationDateTime"] = created.timestamp()
    out["dynamodb"] = change
    out["eventSourceARN"] = stream_arn
    return out
