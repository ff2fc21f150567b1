"""Settings read from the Lambda environment, validated once per container."""

from __future__ import annotations

import os
from decimal import Decimal
from functools import lru_cache

from pydantic import BaseModel, Field, field_validator

# Minor units per ISO 4217 currency: "12.345" USD is refused, "100" JPY is the most precise yen amount.
CURRENCY_MINOR_DIGITS: dict[str, int] = {"USD": 2, "EUR": 2, "GBP": 2, "CAD": 2, "AUD": 2, "JPY": 0}


class Settings(BaseModel):
    """Every knob the functions read. Names match the environment variables in template.yaml."""

    tracker_table_name: str = "TrackerTable"
    transfer_state_machine_arn: str = ""
    max_transfer_amount: Decimal = Field(default=Decimal("5000"), gt=0)
    allowed_currencies: tuple[str, ...] = ("USD", "EUR", "GBP", "CAD")
    default_currency: str = "USD"
    tracker_ttl_days: int = Field(default=7, ge=1)
    poll_seconds: int = Field(default=3, ge=1, le=30)
    max_hold_seconds: int = Field(default=600, ge=10)
    #: The flow block's InvocationTimeLimitSeconds (Connect allows 1-8): AWS retries stop before it runs out.
    connect_timeout_seconds: float = Field(default=8.0, gt=0, le=8)
    bank_api_url: str = "http://127.0.0.1:8099"
    bank_timeout_seconds: float = Field(default=5.0, gt=0)
    # The follow-up workflow (tasks for agents).
    follow_up_state_machine_arn: str = ""
    connect_instance_arn: str = ""
    follow_up_contact_flow_id: str = ""
    follow_up_dlq_url: str = ""
    max_rule_retries_per_day: int = Field(default=5, ge=0)

    # Failure notifications and reconciliation (issue 5).
    event_bus_name: str = "default"
    sweep_after_seconds: int = Field(default=960, ge=60)
    sweep_max_items: int = Field(default=50, ge=1, le=500)
    sweep_describe_per_second: float = Field(default=5.0, gt=0, le=15)

    @field_validator("allowed_currencies", mode="before")
    @classmethod
    def _split_currencies(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(code.strip().upper() for code in value.split(",") if code.strip())
        return value

    @field_validator("allowed_currencies")
    @classmethod
    def _known_currencies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [code for code in value if code not in CURRENCY_MINOR_DIGITS]
        if unknown:
            raise ValueError(f"no minor-unit rule for {unknown}")
        return value


def instance_id(instance_arn: str) -> str:
    """``arn:aws:connect:…:instance/<id>`` -> ``<id>`` (what Connect's APIs call InstanceId)."""
    return instance_arn.rsplit("instance/", 1)[-1]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this container. Tests that change the environment call ``get_settings.cache_clear()``."""
    names = Settings.model_fields.keys()
    return Settings.model_validate({n: os.environ[n.upper()] for n in names if n.upper() in os.environ})
