"""An X-Ray daemon stand-in: what a traced function would send to X-Ray, kept for tests to read.

On AWS, Lambda runs the X-Ray daemon for a function with active tracing, tells the function where it listens
(``AWS_XRAY_DAEMON_ADDRESS``, with ``AWS_XRAY_CONTEXT_MISSING=LOG_ERROR``) and passes each invocation's trace
header (``_X_AMZN_TRACE_ID``, from the Runtime API's ``Lambda-Runtime-Trace-Id``) ("Defined runtime environment
variables", https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime;
"Visualize Lambda function invocations using AWS X-Ray", https://docs.aws.amazon.com/lambda/latest/dg/services-xray.html).
The X-Ray SDK sends every (sub)segment document to the daemon over UDP, one datagram each: a JSON header line
``{"format": "json", "version": 1}``, a newline, then the document ("Sending segment documents to the X-Ray
daemon", https://docs.aws.amazon.com/xray/latest/devguide/xray-api-sendingdata.html#xray-api-daemon).

This stand-in listens on 127.0.0.1 and keeps what it receives, parsed; it forwards nothing.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

HEADER = {"format": "json", "version": 1}


class XRayDaemon:
    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self._documents: list[dict[str, Any]] = []
        self._raw: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="xray-daemon", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """What AWS_XRAY_DAEMON_ADDRESS names: host:port."""
        host, port = self._socket.getsockname()[:2]
        return f"{host}:{port}"

    def documents(self) -> list[dict[str, Any]]:
        """Every segment and subsegment document received so far."""
        with self._lock:
            return list(self._documents)

    def raw(self) -> bytes:
        """Everything received, as sent (for searching: nothing the SDK sent is left out)."""
        with self._lock:
            return b"\n".join(self._raw)

    def clear(self) -> None:
        with self._lock:
            self._documents.clear()
            self._raw.clear()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                datagram = self._socket.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            header, _, body = datagram.partition(b"\n")
            with self._lock:
                self._raw.append(datagram)
                try:
                    if json.loads(header) == HEADER:
                        self._documents.append(json.loads(body))
                except ValueError:
                    pass  # kept raw: a malformed datagram is still something the SDK sent
