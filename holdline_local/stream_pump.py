"""DynamoDB Stream -> Lambda, the way an event source mapping does it, for the local stack.

moto records stream changes, but its own event source mapping would call the function synchronously inside
the write, ignore FilterCriteria and not run our code. So the local stack creates no ESM in moto; this pump
polls dynamodbstreams for each AWS::Lambda::EventSourceMapping of the template and invokes the function
through the dispatcher, honouring what matters to us: FilterCriteria (same pattern syntax as EventBridge),
BatchSize, ReportBatchItemFailures (retry from the reported record), MaximumRetryAttempts, and the
OnFailure destination (an SQS message in the shape Lambda writes). Not emulated: BisectBatchOnFunctionError
(a failing batch is retried whole), parallelization, tumbling windows.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moto.events.models import EventPattern

from holdline_local.moto_adapter import LambdaDispatcher


@dataclass
class StreamMapping:
    logical_id: str
    stream_arn: str
    function: str
    batch_size: int = 100
    max_retries: int = 3
    report_item_failures: bool = False
    on_failure_queue_url: str | None = None
    patterns: Sequence[EventPattern] = ()
    # progress
    after_sequence: str | None = None
    attempts: int = 0
    invocations: int = field(default=0)
    shard_of: dict[str, str] = field(default_factory=dict)  # sequence number -> shard id

    @classmethod
    def from_properties(cls, logical_id: str, props: Mapping[str, Any], queue_urls: Mapping[str, str]) -> StreamMapping:
        filters = props.get("FilterCriteria", {}).get("Filters", [])
        destination = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        return cls(
            logical_id=logical_id,
            stream_arn=str(props["EventSourceArn"]),
            function=str(props["FunctionName"]),
            batch_size=int(props.get("BatchSize", 100)),
            # -1 is "until the record expires" on AWS; locally a small bound keeps a broken test short.
            max_retries=max(0, int(props.get("MaximumRetryAttempts", 3))),
            report_item_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
            on_failure_queue_url=queue_urls.get(str(destination)) if destination else None,
            patterns=[EventPattern.load(f["Pattern"]) for f in filters],
        )

    def matches(self, record: Mapping[str, Any]) -> bool:
        return not self.patterns or any(p.matches_event(dict(record)) for p in self.patterns)  # type: ignore[arg-type]


class StreamPump:
    """Polls every mapping in a background thread; :meth:`drain` runs it to quiescence for tests."""

    def __init__(self, streams: Any, sqs: Any, dispatcher: LambdaDispatcher, mappings: Sequence[StreamMapping]) -> None:
        self._streams = streams
        self._sqs = sqs
        self._dispatcher = dispatcher
        self.mappings = list(mappings)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, interval: float = 0.2) -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.poll()
                except Exception:  # noqa: S112 - a local endpoint hiccup must not kill the pump
                    continue

        self._thread = threading.Thread(target=loop, name="stream-pump", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No delivery while inside (records wait in the stream, as when a mapping is disabled on AWS)."""
        with self._lock:
            yield

    def drain(self, max_rounds: int = 200) -> None:
        """Poll until no mapping has anything left to deliver (or retry)."""
        for _ in range(max_rounds):
            if not self.poll():
                return
        raise RuntimeError("stream pump did not settle")

    def poll(self) -> bool:
        """One pass over every mapping; True if something was delivered or retried."""
        with self._lock:
            return any([self._poll(mapping) for mapping in self.mappings])

    # ---- one mapping ---------------------------------------------------------------------------------------
    def _records(self, mapping: StreamMapping) -> list[dict[str, Any]]:
        shards = self._streams.describe_stream(StreamArn=mapping.stream_arn)["StreamDescription"]["Shards"]
        records: list[dict[str, Any]] = []
        for shard in shards:
            if mapping.after_sequence is None:
                iterator = self._streams.get_shard_iterator(
                    StreamArn=mapping.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            else:
                iterator = self._streams.get_shard_iterator(
                    StreamArn=mapping.stream_arn,
                    ShardId=shard["ShardId"],
                    ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                    SequenceNumber=mapping.after_sequence,
                )["ShardIterator"]
            got = self._streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]
            mapping.shard_of.update({r["dynamodb"]["SequenceNumber"]: shard["ShardId"] for r in got})
            records.extend(got)
        return records

    def _poll(self, mapping: StreamMapping) -> bool:
        pending = self._records(mapping)
        if not pending:
            return False
        batch = pending[: mapping.batch_size]
        converted = [_as_lambda_record(r, mapping.stream_arn) for r in batch]
        matched = [r for r in converted if mapping.matches(r)]
        if not matched:  # filtered out: consumed without an invocation, as on AWS
            mapping.after_sequence = batch[-1]["dynamodb"]["SequenceNumber"]
            return True
        failed_from = self._invoke(mapping, matched)
        if failed_from is None:
            mapping.after_sequence = batch[-1]["dynamodb"]["SequenceNumber"]
            mapping.attempts = 0
            return True
        mapping.attempts += 1
        if mapping.attempts <= mapping.max_retries:
            # Checkpoint just before the failed record: the next poll retries from it.
            index = next((i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] == failed_from), 0)
            if index > 0:
                mapping.after_sequence = batch[index - 1]["dynamodb"]["SequenceNumber"]
            return True
        self._on_failure(mapping, matched)
        mapping.after_sequence = batch[-1]["dynamodb"]["SequenceNumber"]
        mapping.attempts = 0
        return True

    def _invoke(self, mapping: StreamMapping, records: list[dict[str, Any]]) -> str | None:
        """Deliver; None on success, else the sequence number to retry from."""
        mapping.invocations += 1
        headers: dict[str, str] = {}
        raw = self._dispatcher.invoke(mapping.function, json.dumps({"Records": records}), headers)
        first = str(records[0]["dynamodb"]["SequenceNumber"])
        if headers.get("x-amz-function-error"):
            return first
        answer = json.loads(raw or b"null")
        failures = (answer or {}).get("batchItemFailures") if mapping.report_item_failures else None
        if failures:
            identifiers = [str(f.get("itemIdentifier", "")) for f in failures]
            # An empty or unknown identifier fails the whole batch, as Lambda does.
            known = [i for i in identifiers if any(i == str(r["dynamodb"]["SequenceNumber"]) for r in records)]
            return min(known, key=int) if len(known) == len(identifiers) else first
        return None

    def _on_failure(self, mapping: StreamMapping, records: list[dict[str, Any]]) -> None:
        if not mapping.on_failure_queue_url:
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
        self._sqs.send_message(QueueUrl=mapping.on_failure_queue_url, MessageBody=json.dumps(body))


def _as_lambda_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    out = dict(record)
    change = dict(out.get("dynamodb", {}))
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        change["ApproximateCreationDateTime"] = created.timestamp()
    out["dynamodb"] = change
    out["eventSourceARN"] = stream_arn
    return out
