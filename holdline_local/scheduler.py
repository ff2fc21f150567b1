"""EventBridge schedule rules fire locally, on the time scale.

moto stores a rule's ``ScheduleExpression`` and never fires it. AWS fires a ``rate(N unit)`` rule every N
units ("Creating a rule that runs on a schedule", https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-rule-schedule.html),
sending its targets a "Scheduled Event" from ``aws.events`` whose ``resources`` name the rule. The scheduler
reads the rules from moto (so ``disable-rule`` works locally) and fires each enabled one every N units x the
time scale. ``cron(...)`` expressions are not fired locally (they are listed in :attr:`Scheduler.unsupported`).
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}
_RATE = re.compile(r"^rate\((\d+) (minutes?|hours?|days?)\)$")


def rate_seconds(expression: str) -> float | None:
    """``rate(5 minutes)`` -> 300.0; None for anything else (cron)."""
    match = _RATE.match(expression.strip())
    if not match:
        return None
    value, unit = int(match.group(1)), match.group(2)
    if value < 1 or (value == 1) != (not unit.endswith("s")):
        raise ValueError(f"invalid schedule expression {expression!r}: AWS wants rate(1 minute), rate(5 minutes)")
    return float(value * _UNITS[unit])


def scheduled_event(rule: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": rule.account_id,
        "time": datetime.now(UTC).timestamp(),
        "region": rule.region_name,
        "resources": [rule.arn],
        "detail": {},
    }


class Scheduler:
    def __init__(self, account_id: str, region: str, time_scale: float, tick: float = 0.05) -> None:
        self._account_id = account_id
        self._region = region
        self.time_scale = time_scale
        self._tick = tick
        self._next: dict[str, float] = {}
        self._stop = threading.Event()
        self._pause = threading.Lock()
        self._thread: threading.Thread | None = None
        self.fired: list[tuple[str, float]] = []
        self.unsupported: set[str] = set()

    def _rules(self) -> list[Any]:
        from moto.events.models import events_backends

        backend = events_backends[self._account_id][self._region]
        return [
            rule for bus in backend.event_buses.values() for rule in bus.rules.values() if rule.scheduled_expression
        ]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="eventbridge-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Tests: no scheduled run starts while inside (one already started finishes)."""
        with self._pause:
            yield

    def fire(self, rule_name: str) -> None:
        """Tests and the CLI: fire one schedule rule now, as its schedule would."""
        for rule in self._rules():
            if rule.name == rule_name:
                self._fire(rule)
                return
        raise KeyError(f"no schedule rule {rule_name}")

    def _fire(self, rule: Any) -> None:
        self.fired.append((rule.name, time.monotonic()))
        rule.send_to_targets(scheduled_event(rule))

    def _loop(self) -> None:
        while not self._stop.wait(self._tick):
            with self._pause:
                now = time.monotonic()
                for rule in self._rules():
                    period = rate_seconds(rule.scheduled_expression)
                    if period is None:
                        self.unsupported.add(rule.name)
                        continue
                    due = self._next.setdefault(rule.arn, now + period * self.time_scale)
                    if rule.state == "ENABLED" and now >= due:
                        self._next[rule.arn] = now + period * self.time_scale
                        try:
                            self._fire(rule)
                        except Exception:  # noqa: S112 - one bad target must not stop the schedule
                            continue
