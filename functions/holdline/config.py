"""Settings read from the Lambda environment, validated once per container.

A plain dataclass, not a pydantic model: the Connect-facing functions read their settings on every cold
start, and pydantic's import (with pydantic_core and annotated_types) was a third of a status or results
cold import (``python -X importtime``). Only the starter's request models need pydantic.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

# Minor units per ISO 4217 currency: "12.345" USD is refused, "100" JPY is the most precise yen amount.
CURRENCY_MINOR_DIGITS: dict[str, int] = {"USD": 2, "EUR": 2, "GBP": 2, "CAD": 2, "AUD": 2, "JPY": 0}


def _bounds(*, gt: float | None = None, ge: float | None = None, le: float | None = None) -> Any:
    return {"gt": gt, "ge": ge, "le": le}


@dataclass(frozen=True)
class Settings:
    """Every knob the functions read. Names match the environment variables in template.yaml (upper case).

    Values given as strings (the environment) are converted to the type of the field's default; a value of
    the wrong type or out of its bounds raises ``ValueError`` (a broken deployment, found at the first call).
    """

    tracker_table_name: str = "TrackerTable"
    transfer_state_machine_arn: str = ""
    max_transfer_amount: Decimal = field(default=Decimal("5000"), metadata=_bounds(gt=0))
    allowed_currencies: tuple[str, ...] = ("USD", "EUR", "GBP", "CAD")
    default_currency: str = "USD"
    tracker_ttl_days: int = field(default=7, metadata=_bounds(ge=1))
    poll_seconds: int = field(default=3, metadata=_bounds(ge=1, le=30))
    max_hold_seconds: int = field(default=600, metadata=_bounds(ge=10))
    #: The flow block's InvocationTimeLimitSeconds (Connect allows 1-8): AWS retries stop before it runs out.
    connect_timeout_seconds: float = field(default=8.0, metadata=_bounds(gt=0, le=8))
    #: An asynchronous block's InvocationTimeLimitSeconds (Connect allows up to 60): the outcome waiter answers
    #: a margin before it.
    connect_async_timeout_seconds: float = field(default=60.0, metadata=_bounds(gt=0, le=60))
    bank_api_url: str = "http://127.0.0.1:8099"
    bank_timeout_seconds: float = field(default=5.0, metadata=_bounds(gt=0))
    # The follow-up workflow (tasks for agents).
    follow_up_state_machine_arn: str = ""
    connect_instance_arn: str = ""
    follow_up_contact_flow_id: str = ""
    follow_up_dlq_url: str = ""
    max_rule_retries_per_day: int = field(default=5, metadata=_bounds(ge=0))

    #: A tracker row still at step STARTED this long after the starter wrote it has no execution that any starter
    #: run can still start: past the flow's two "Start transfer" visits (6 s each, "One moment, please." between)
    #: and the last run's own Timeout (6 s) after it. Status and the outcome waiter then start it themselves (same
    #: name, same input: a no-op if it exists) or, if they cannot, end the row as not started.
    #: tests/unit/test_outcome_waiter.py ties it to the flow and the template.
    not_started_grace_seconds: int = field(default=20, metadata=_bounds(ge=1))

    # Failure notifications and reconciliation (issue 5).
    event_bus_name: str = "default"
    sweep_after_seconds: int = field(default=960, metadata=_bounds(ge=60))
    sweep_max_items: int = field(default=50, metadata=_bounds(ge=1, le=500))
    sweep_describe_per_second: float = field(default=5.0, metadata=_bounds(gt=0, le=15))
    #: A FAILED row still without ``failureNotifiedAt`` this long after it failed lost its announcement (the
    #: notifier's stream record expired or was dead-lettered): the sweeper announces it (issue 19).
    sweep_announce_after_seconds: int = field(default=900, metadata=_bounds(ge=60))
    #: FAILED rows the sweeper reads (one GetItem each) per run, looking for lost announcements.
    sweep_max_failed_reads: int = field(default=100, metadata=_bounds(ge=1, le=1000))

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value = _convert(spec.name, getattr(self, spec.name), spec.default)
            _check_bounds(spec.name, value, spec.metadata)
            object.__setattr__(self, spec.name, value)
        unknown = [code for code in self.allowed_currencies if code not in CURRENCY_MINOR_DIGITS]
        if unknown:
            raise ValueError(f"allowed_currencies: no minor-unit rule for {unknown}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(spec.name for spec in dataclasses.fields(cls))


def _convert(name: str, value: Any, default: Any) -> Any:
    """A value as the type of the field's default (the environment gives strings)."""
    try:
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else value
            return tuple(str(item).strip().upper() for item in items if str(item).strip())
        if isinstance(default, Decimal):
            return value if isinstance(value, Decimal) else Decimal(str(value))
        if isinstance(default, str):
            if not isinstance(value, str):
                raise TypeError("not a string")
            return value
        if isinstance(default, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError("not a whole number")
            return int(value)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise TypeError("not a number")
            return float(value)
    except (TypeError, ValueError, InvalidOperation) as exc:
        raise ValueError(f"{name}: {value!r} is not a valid {type(default).__name__}") from exc
    return value


def _check_bounds(name: str, value: Any, bounds: Any) -> None:
    gt, ge, le = bounds.get("gt"), bounds.get("ge"), bounds.get("le")
    if (gt is not None and not value > gt) or (ge is not None and not value >= ge) or (le is not None and value > le):
        raise ValueError(f"{name}: {value} is out of bounds (gt={gt}, ge={ge}, le={le})")


def instance_id(instance_arn: str) -> str:
    """``arn:aws:connect:…:instance/<id>`` -> ``<id>`` (what Connect's APIs call InstanceId)."""
    return instance_arn.rsplit("instance/", 1)[-1]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this container. Tests that change the environment call ``get_settings.cache_clear()``."""
    values: dict[str, Any] = {n: os.environ[n.upper()] for n in Settings.names() if n.upper() in os.environ}
    return Settings(**values)
