"""One Lambda execution environment: a worker process of its own running AWS's runtime client
(``python -m awslambdaric <Handler>``) against a Runtime API served by :mod:`holdline_local.runtime.api`.

What it shares with Lambda's environments ("Understanding the Lambda execution environment lifecycle",
https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html):

- Init runs once (the handler module is imported, its module-level clients and caches created), then the
  environment serves one invocation at a time and is reused while it is warm.
- Its variables are exactly the ones it is started with (see :mod:`holdline_local.runtime.variables`):
  nothing of the parent process leaks in.
- Its code is the function's package directory as the task root, and its interpreter is the Lambda
  package's own virtual environment (functions/requirements.txt + the runtime's boto3): the local
  tooling, moto and the test libraries cannot be imported from a handler, as they could not on AWS.
- When an invocation outlives the function's Timeout, the process is killed (SIGKILL: no clean-up code
  runs) and the environment is gone; the next invocation gets a new one.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from holdline_local.runtime.api import Invocation, RuntimeApi

LogSink = Callable[[str, str, str], None]  # (environment id, request id or "", line)

_ids = itertools.count(1)


class InitFailed(Exception):
    """The environment could not finish Init: the runtime reported an error, died, or took too long."""

    def __init__(self, error_type: str, message: str, document: bytes | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.document = document


@dataclass(frozen=True)
class Outcome:
    """How one invocation ended in an environment."""

    kind: str  # "ok" | "error" (the handler raised) | "timeout" | "crash"
    body: bytes
    duration_ms: float


class ExecutionEnvironment:
    def __init__(
        self,
        function_name: str,
        handler: str,
        task_root: Path,
        python: Path,
        variables: Mapping[str, str],
        log: LogSink,
    ) -> None:
        self.id = f"{function_name}/{next(_ids)}"
        self.function_name = function_name
        self._handler = handler
        self._task_root = task_root
        self._python = python
        self._variables = dict(variables)
        self._log = log
        self._api: RuntimeApi | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._exited = threading.Event()
        self._reader: threading.Thread | None = None
        self.init_duration_ms = 0.0
        self.invocations = 0
        self.alive = False
        self._cpu_seconds_at_exit = 0.0

    # ---- lifecycle ----------------------------------------------------------------------------------------
    def start(self, init_limit_seconds: float) -> None:
        """Init: start the worker and wait for its first poll for an event."""
        self._api = api = RuntimeApi()
        variables = {**self._variables, "AWS_LAMBDA_RUNTIME_API": api.address}
        started = time.monotonic()
        self._process = subprocess.Popen(  # noqa: S603 - our interpreter, our handler string
            [str(self._python), "-m", "awslambdaric", self._handler],
            cwd=self._task_root,
            env=variables,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal is for the local stack, not each worker
        )
        self._reader = threading.Thread(target=self._read_output, name=f"log-{self.id}", daemon=True)
        self._reader.start()
        while not api.init_done.wait(0.05):
            if self._exited.is_set():
                raise InitFailed("Runtime.ExitError", f"Runtime exited during Init: {self._exit_status()}")
            if time.monotonic() - started > init_limit_seconds:
                self.kill()
                raise InitFailed("Sandbox.Timedout", f"Init did not finish in {init_limit_seconds:.0f} seconds")
        self.init_duration_ms = (time.monotonic() - started) * 1000
        if api.init_error is not None:
            self.kill()
            raise InitFailed("Runtime.InitError", "the runtime reported an Init error", api.init_error)
        self.alive = True

    def run(self, invocation: Invocation, timeout_seconds: float) -> Outcome:
        """Give the environment one event; wait for its answer until the function's Timeout."""
        assert self._api is not None and self.alive
        self.invocations += 1
        started = time.monotonic()
        self._api.submit(invocation)
        finished = invocation.done.wait(timeout_seconds)
        duration_ms = (time.monotonic() - started) * 1000
        if not finished:
            self.kill(wait=False)  # the answer is due now: the clean-up can finish behind it
            return Outcome("timeout", b"", duration_ms)
        if invocation.error_header == "Runtime.ExitError":
            return Outcome("crash", invocation.body, duration_ms)
        return Outcome("error" if invocation.failed else "ok", invocation.body, duration_ms)

    def kill(self, *, wait: bool = True) -> None:
        """Discard the environment: SIGKILL, as Lambda stops a function that ran out of time. With
        ``wait=False`` the process is killed at once and the rest (reaping it, closing its Runtime API, whose
        server takes up to half a second to stop) happens in the background."""
        self.alive = False
        process = self._process
        if process is not None and process.poll() is None:
            self._cpu_seconds_at_exit = self.cpu_seconds()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        if wait:
            self._clean_up()
        else:
            threading.Thread(target=self._clean_up, name=f"reap-{self.id}", daemon=True).start()

    def _clean_up(self) -> None:
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=10)
        if self._api is not None and not self._api.closed:
            self._api.close()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=5)

    # ---- measurements -------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def max_memory_mb(self) -> int:
        """The worker's peak resident set (VmHWM): what REPORT calls Max Memory Used."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
        except (OSError, ValueError):
            pass
        return 0

    def cpu_seconds(self) -> float:
        """User + system CPU the worker has used (its own /proc stat; the last reading once it is gone)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return self._cpu_seconds_at_exit

    # ---- output ---------------------------------------------------------------------------------------------
    def _read_output(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        for raw in process.stdout:
            current = self._api.current if self._api is not None else None
            request_id = current.request_id if current is not None and not current.done.is_set() else ""
            self._log(self.id, request_id, raw.decode("utf-8", "replace").rstrip("\n"))
        process.wait()
        self._exited.set()
        self.alive = False
        current = self._api.current if self._api is not None else None
        if current is not None and not current.done.is_set():
            # The runtime died mid-invocation (os._exit, a segfault, out of memory): Lambda reports it so.
            message = f"RequestId: {current.request_id} Error: Runtime exited with error: {self._exit_status()}"
            document = {"errorType": "Runtime.ExitError", "errorMessage": message}
            current.finish(json.dumps(document).encode(), failed=True, error_header="Runtime.ExitError")

    def _exit_status(self) -> str:
        code = self._process.returncode if self._process is not None else None
        if code is not None and code < 0:
            return f"signal: {signal.Signals(-code).name.lower().removeprefix('sig')}"
        return f"exit status {code}"
