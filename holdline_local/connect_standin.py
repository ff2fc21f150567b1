"""A small Amazon Connect stand-in for the calls Holdline makes (moto has no StartTaskContact).

It speaks Connect's REST-JSON wire format, so the real boto3 ``connect`` client talks to it unchanged when
``AWS_ENDPOINT_URL_CONNECT`` points here: ``PUT /contact/task`` answers ``{"ContactId": ...}``, and errors
carry ``x-amzn-ErrorType`` and the status codes of Connect's service model, so botocore raises the same
``ClientError`` codes it raises against AWS.

Like the sandbox bank it has a fault injector (queued faults, faults by rate, latency) and keeps every task
it created, so tests can count tasks per client token.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Status codes from Connect's service model (botocore's connect/service-2.json).
ERROR_STATUS = {
    "InvalidRequestException": 400,
    "InvalidParameterException": 400,
    "ServiceQuotaExceededException": 402,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ResourceNotReadyException": 409,
    "IdempotencyException": 409,
    "ThrottlingException": 429,
    "InternalServiceException": 500,
}


@dataclass(frozen=True)
class CreatedTask:
    contact_id: str
    instance_id: str
    client_token: str
    request: dict[str, Any]
    at: float


@dataclass
class _Faults:
    queued: deque[str] = field(default_factory=deque)
    rate: dict[str, float] = field(default_factory=dict)
    latency_seconds: float = 0.0


class ConnectStandIn:
    """``start()`` returns the endpoint URL; ``instances`` and ``contact_flows`` are the known ids."""

    def __init__(
        self,
        *,
        instance_ids: set[str] | None = None,
        contact_flow_ids: set[str] | None = None,
        seed: int | None = None,
    ) -> None:
        self.instance_ids = set(instance_ids or set())
        self.contact_flow_ids = set(contact_flow_ids or set())
        self._lock = threading.Lock()
        self._tasks: list[CreatedTask] = []
        self._by_token: dict[str, CreatedTask] = {}
        self._faults = _Faults()
        self._random = random.Random(seed)
        self._server: ThreadingHTTPServer | None = None
        self.requests = 0

    # ---- fault injection ------------------------------------------------------------------------------
    def fail_next(self, error_code: str, times: int = 1) -> None:
        """The next ``times`` StartTaskContact calls fail with ``error_code`` (then calls succeed again)."""
        if error_code not in ERROR_STATUS:
            raise ValueError(f"unknown Connect error {error_code}")
        with self._lock:
            self._faults.queued.extend([error_code] * times)

    def fail_at_rate(self, error_code: str, rate: float) -> None:
        if error_code not in ERROR_STATUS or not 0 <= rate <= 1:
            raise ValueError("a known error code and a rate in [0, 1]")
        with self._lock:
            self._faults.rate[error_code] = rate

    def set_latency(self, seconds: float) -> None:
        self._faults.latency_seconds = seconds

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = _Faults()

    # ---- inspection -------------------------------------------------------------------------------------
    @property
    def tasks(self) -> list[CreatedTask]:
        with self._lock:
            return list(self._tasks)

    def count(self, client_token: str) -> int:
        return sum(1 for task in self.tasks if task.client_token == client_token)

    # ---- the API ----------------------------------------------------------------------------------------
    def start_task_contact(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], str | None]:
        """Returns (status, answer, error type)."""
        with self._lock:
            self.requests += 1
            if self._faults.queued:
                code = self._faults.queued.popleft()
                return ERROR_STATUS[code], {"message": f"injected {code}"}, code
            for code, rate in self._faults.rate.items():
                if self._random.random() < rate:
                    return ERROR_STATUS[code], {"message": f"injected {code}"}, code
        instance_id = body.get("InstanceId")
        name = body.get("Name")
        if not isinstance(name, str) or not name or len(name) > 512:
            return 400, {"message": "Name is required (1-512 characters)"}, "InvalidParameterException"
        if instance_id not in self.instance_ids:
            return 404, {"message": "Instance not found"}, "ResourceNotFoundException"
        flow_id = body.get("ContactFlowId")
        if not (flow_id or body.get("TaskTemplateId") or body.get("QuickConnectId")):
            return (
                400,
                {"message": "ContactFlowId, TaskTemplateId or QuickConnectId is required"},
                ("InvalidRequestException"),
            )
        if flow_id is not None and flow_id not in self.contact_flow_ids:
            return (
                404,
                {"message": "ContactFlowId provided does not belong to connect instance"},
                ("ResourceNotFoundException"),
            )
        description = body.get("Description", "")
        if isinstance(description, str) and len(description) > 4096:
            return 400, {"message": "Description is longer than 4096 characters"}, "InvalidParameterException"
        token = str(body.get("ClientToken") or uuid.uuid4())
        request = {k: v for k, v in body.items() if k != "ClientToken"}
        with self._lock:
            existing = self._by_token.get(token)
            if existing is not None:
                if existing.request != request:
                    return 409, {"message": "ClientToken reused with another request"}, "IdempotencyException"
                return 200, {"ContactId": existing.contact_id}, None
            task = CreatedTask(str(uuid.uuid4()), str(instance_id), token, request, time.time())
            self._tasks.append(task)
            self._by_token[token] = task
        return 200, {"ContactId": task.contact_id}, None

    # ---- the HTTP server ---------------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read their own output
                return

            def do_PUT(self) -> None:
                if self.path.split("?", 1)[0] != "/contact/task":
                    self._send(404, {"message": "not supported by the stand-in"}, "ResourceNotFoundException")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._send(400, {"message": "invalid JSON"}, "InvalidRequestException")
                    return
                if standin._faults.latency_seconds:
                    time.sleep(standin._faults.latency_seconds)
                self._send(*standin.start_task_contact(body))

            def _send(self, status: int, answer: dict[str, Any], error_type: str | None) -> None:
                data = json.dumps(answer).encode()
                self.send_response(status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if error_type:
                    self.send_header("x-amzn-ErrorType", error_type)
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="connect-standin", daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
