"""What the functions print goes to CloudWatch Logs, as on AWS: log group ``/aws/lambda/<function>``, one log
stream per execution environment (Lambda's own naming, ``YYYY/MM/DD/[$LATEST]<id>``), so that
``aws logs tail /aws/lambda/StarterFunction --follow`` works against ``holdline local up``.

Lines are batched and written by a background thread straight into moto's Logs backend (no HTTP round trip
per line). Off by default in the test suite (the runtime keeps every line in memory for tests anyway)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import defaultdict
from typing import Any

from holdline_local.runtime.service import LogLine


class LogShipper:
    def __init__(self, account_id: str, region: str, interval: float = 0.5) -> None:
        self._account_id = account_id
        self._region = region
        self._interval = interval
        self._pending: list[LogLine] = []
        self._lock = threading.Lock()
        self._streams: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cloudwatch-logs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()

    def __call__(self, line: LogLine) -> None:
        with self._lock:
            self._pending.append(line)

    @staticmethod
    def stream_name(environment: str, at: float) -> str:
        day = time.strftime("%Y/%m/%d", time.gmtime(at))
        return f"{day}/[$LATEST]{hashlib.sha256(environment.encode()).hexdigest()[:32]}"

    def flush(self) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
        if not lines:
            return
        from moto.logs.models import logs_backends

        backend = logs_backends[self._account_id][self._region]
        batches: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for line in lines:
            key = (f"/aws/lambda/{line.function}", self.stream_name(line.environment or "platform", line.at))
            batches[key].append({"timestamp": int(line.at * 1000), "message": line.text})
        for (group, stream), events in batches.items():
            if (group, stream) not in self._streams:
                if group not in backend.groups:
                    backend.create_log_group(group, tags={})
                backend.ensure_log_stream(group, stream)
                self._streams.add((group, stream))
            backend.put_log_events(group, stream, events)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except Exception:  # noqa: S112 - a log line lost locally must not stop the shipping
                continue
