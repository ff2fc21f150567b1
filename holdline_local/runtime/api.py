"""The Lambda Runtime API, server side, for one execution environment.

The worker process runs AWS's own runtime client (``awslambdaric``, what the Lambda base images for Python
run), which speaks the Runtime API documented in "Using the Lambda runtime API for custom runtimes"
(https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html):

- ``GET  /2018-06-01/runtime/invocation/next``: long poll for the next event. Its headers carry
  ``Lambda-Runtime-Aws-Request-Id``, ``Lambda-Runtime-Deadline-Ms`` (epoch milliseconds: the context's
  ``get_remaining_time_in_millis`` is computed from it), ``Lambda-Runtime-Invoked-Function-Arn`` and
  ``Lambda-Runtime-Trace-Id``. The first poll is the end of the environment's Init phase.
- ``POST /2018-06-01/runtime/invocation/{id}/response``: the handler's answer.
- ``POST /2018-06-01/runtime/invocation/{id}/error``: an unhandled exception, as the runtime shapes it
  (``errorMessage``, ``errorType``, ``requestId``, ``stackTrace``).
- ``POST /2018-06-01/runtime/init/error``: the handler could not be imported or initialised.

One server per environment (an environment runs one invocation at a time, as on AWS), so an answer can
only come from the environment the invocation was given to.
"""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_PREFIX = "/2018-06-01/runtime"
#: "Invocation payload (request and response): 6 MB each for synchronous" (Lambda quotas,
#: https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html). The exact byte count is what
#: Lambda's own error message states.
MAX_RESPONSE_BYTES = 6_291_556


@dataclass(eq=False)
class Invocation:
    """One event given to one environment, and what became of it."""

    request_id: str
    payload: bytes
    deadline_ms: int
    function_arn: str
    trace_id: str = ""
    client_context: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    #: The runtime's answer: the handler's response, or its error document.
    body: bytes = b""
    failed: bool = False
    #: The value of ``Lambda-Runtime-Function-Error-Type`` on an error post.
    error_header: str = ""

    def finish(self, body: bytes, *, failed: bool, error_header: str = "") -> None:
        if self.done.is_set():  # a late post after a timeout or a crash decided the outcome: ignored
            return
        self.body, self.failed, self.error_header = body, failed, error_header
        self.done.set()


class RuntimeApi:
    """Serves one environment's runtime client on 127.0.0.1 (an ephemeral port)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Invocation | None] = queue.Queue()
        self.current: Invocation | None = None
        #: Set at the runtime's first poll for an event (Init done) or when it reports an init error.
        self.init_done = threading.Event()
        self.init_error: bytes | None = None
        self.closed = False
        self._server = _Server(("127.0.0.1", 0), self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="lambda-runtime-api", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """What the runtime reads from ``AWS_LAMBDA_RUNTIME_API``: host:port."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def submit(self, invocation: Invocation) -> None:
        self.current = invocation
        self._queue.put(invocation)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._queue.put(None)  # releases a poll that is waiting for an event
        self._server.shutdown()
        self._server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: RuntimeApi) -> None:
        super().__init__(address, _Handler)
        self.api = api

    def handle_error(self, request: Any, client_address: Any) -> None:
        """The worker was killed mid-request (a timeout): nothing to report."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the runtime client keeps its connection open between invocations
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the environment's own log is what the runtime captures."""

    # ---- routes -----------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        if self.path != f"{API_PREFIX}/invocation/next":
            self._send(HTTPStatus.NOT_FOUND, {"errorMessage": "unknown path", "errorType": "InvalidRequest"})
            return
        api = self.server.api
        api.init_done.set()
        invocation = api._queue.get()
        if invocation is None or api.closed:
            self._send(HTTPStatus.GONE, {"errorMessage": "environment shut down", "errorType": "Shutdown"})
            self.close_connection = True
            return
        headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
            "Lambda-Runtime-Trace-Id": invocation.trace_id,
        }
        if invocation.client_context:
            headers["Lambda-Runtime-Client-Context"] = invocation.client_context
        self._send_raw(HTTPStatus.OK, invocation.payload, headers)

    def do_POST(self) -> None:
        body = self._read_body()
        api = self.server.api
        parts = self.path.removeprefix(API_PREFIX).strip("/").split("/")
        if parts == ["init", "error"]:
            api.init_error = body
            api.init_done.set()
            self._send(HTTPStatus.ACCEPTED, {"status": "OK"})
            return
        if len(parts) == 3 and parts[0] == "invocation" and parts[2] in {"response", "error"}:
            invocation = api.current
            if invocation is None or invocation.request_id != parts[1]:
                self._send(
                    HTTPStatus.BAD_REQUEST, {"errorMessage": "unknown request id", "errorType": "InvalidRequestID"}
                )
                return
            if parts[2] == "error":
                invocation.finish(
                    body, failed=True, error_header=self.headers.get("Lambda-Runtime-Function-Error-Type", "")
                )
            elif len(body) > MAX_RESPONSE_BYTES:
                error = {
                    "errorMessage": f"Response payload size ({len(body)} bytes) exceeded maximum allowed payload "
                    f"size ({MAX_RESPONSE_BYTES} bytes).",
                    "errorType": "Function.ResponseSizeTooLarge",
                }
                invocation.finish(json.dumps(error).encode(), failed=True)
                self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, error)
                return
            else:
                invocation.finish(body, failed=False)
            self._send(HTTPStatus.ACCEPTED, {"status": "OK"})
            return
        self._send(HTTPStatus.NOT_FOUND, {"errorMessage": "unknown path", "errorType": "InvalidRequest"})

    # ---- plumbing ---------------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _send(self, status: HTTPStatus, document: dict[str, str]) -> None:
        self._send_raw(status, json.dumps(document).encode(), {})

    def _send_raw(self, status: HTTPStatus, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
