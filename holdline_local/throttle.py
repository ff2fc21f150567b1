"""A throttling switch for DynamoDB writes, inside the local moto server (the overload soak's fault, issue 19).

While a table is throttled, moto's DynamoDB backend answers its ``PutItem`` and ``UpdateItem`` with
``ProvisionedThroughputExceededException`` (HTTP 400), as DynamoDB answers a write it throttles: "Your request
rate is too high. The AWS SDKs for DynamoDB automatically retry requests that receive this exception"
(DynamoDB API reference, UpdateItem and PutItem, "Errors":
https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateItem.html#API_UpdateItem_Errors,
https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_PutItem.html#API_PutItem_Errors; developer
guide, "Error handling with DynamoDB":
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html). Nothing is written:
no item changes and no stream record is made.

Why in the backend rather than around one client: every writer reaches the same moto server over HTTP (the
Step Functions engine's ``dynamodb:updateItem`` tasks through its own clients, every Lambda function from its
own worker process, the harness too), so one switch there throttles them all alike, whatever retry policy each
client has: its SDK retries really run against the throttled table. Reads, and the other tables, are untouched.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: The error type moto's JSON protocol answers with: botocore reads the part after ``#`` as the error code.
ERROR_TYPE = "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
MESSAGE = (
    "The level of configured provisioned throughput for the table was exceeded. "
    "Consider increasing your provisioning level with the UpdateTable API."
)
WRITES = ("put_item", "update_item")

_lock = threading.Lock()
_throttled: set[str] = set()
#: (table, operation) -> writes refused since the process started.
refused: Counter[tuple[str, str]] = Counter()
_originals: dict[str, Callable[..., Any]] = {}


def _table_name(name: str) -> str:
    # DynamoDB takes a table's name or its ARN (arn:aws:dynamodb:REGION:ACCOUNT:table/NAME).
    return name.split(":table/", 1)[1] if ":table/" in name else name


def _exception() -> Exception:
    from moto.dynamodb.exceptions import DynamodbException

    return DynamodbException(ERROR_TYPE, MESSAGE)


def _guarded(operation: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def write(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
        table = _table_name(table_name)
        with _lock:
            throttled = table in _throttled
            if throttled:
                refused[(table, operation)] += 1
        if throttled:
            raise _exception()
        return original(self, table_name, *args, **kwargs)

    write.__wrapped__ = original  # type: ignore[attr-defined]
    return write


def install() -> None:
    """Wrap the backend's writes (idempotent). Until a table is throttled, every write goes through unchanged."""
    from moto.dynamodb.models import DynamoDBBackend

    with _lock:
        for operation in WRITES:
            if operation not in _originals:
                _originals[operation] = getattr(DynamoDBBackend, operation)
                setattr(DynamoDBBackend, operation, _guarded(operation, _originals[operation]))


def uninstall() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    with _lock:
        _throttled.clear()
        for operation, original in _originals.items():
            setattr(DynamoDBBackend, operation, original)
        _originals.clear()


def throttle(*tables: str) -> None:
    """From now on, writes to these tables are refused (until :func:`release`)."""
    install()
    with _lock:
        _throttled.update(tables)


def release(*tables: str) -> None:
    """Writes to these tables (every table, if none is named) go through again."""
    with _lock:
        if tables:
            _throttled.difference_update(tables)
        else:
            _throttled.clear()


def is_throttled(table: str) -> bool:
    with _lock:
        return _table_name(table) in _throttled


@contextmanager
def throttled(*tables: str) -> Iterator[None]:
    """While inside, writes to ``tables`` are throttled."""
    throttle(*tables)
    try:
        yield
    finally:
        release(*tables)
