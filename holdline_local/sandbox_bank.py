"""A local sandbox of the third-party bank API that Holdline's Lambda functions call to move money.

It exists so the saga can be exercised end to end without a real bank: it keeps balances and an
append-only ledger in memory, honours ``Idempotency-Key`` the way Stripe does, and has documented test
accounts that misbehave on purpose (frozen, down, rate limited, slow), like a payment provider's test
mode. Tests drive it over HTTP and then inspect it from Python (``balance``, ``ledger``, ``count``).

Standard library only, so it can run anywhere the tests run. See docs/sandbox-bank.md.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, cast, get_args
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "TEST_ACCOUNTS",
    "Behaviour",
    "LedgerEntry",
    "PaymentType",
    "SandboxAccount",
    "SandboxBank",
]

PaymentType = Literal["debit", "credit", "refund"]
PAYMENT_TYPES: tuple[str, ...] = get_args(PaymentType)

CURRENCY = "USD"
CENT = Decimal("0.01")
# Amounts are capped well below Decimal's default 28-digit precision so that balance arithmetic can
# never round silently; a real bank has a per-payment limit too.
_AMOUNT_RE = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,2})?")
MAX_IDEMPOTENCY_KEY_LENGTH = 255
# Bodies are tiny; refusing big ones keeps a misbehaving client from making a test hang on a read.
MAX_BODY_BYTES = 64 * 1024
SLOW_ANSWER_SECONDS = 1.5
RETRY_AFTER_SECONDS = 1
# Only answers that a retry with the same body must see again are stored: successes and business
# refusals. A 5xx or 429 is transient, so storing it would turn a blip into a permanent failure.
_REPLAYABLE_STATUSES = frozenset({402, 404, 423})


class Behaviour(StrEnum):
    """How the sandbox treats payments on an account."""

    NORMAL = "normal"
    FROZEN = "frozen"  # 423 ACCOUNT_FROZEN on every payment
    UNAVAILABLE = "unavailable"  # 503 BANK_UNAVAILABLE on every payment, never stored for replay
    RATE_LIMITED = "rate_limited"  # 429 RATE_LIMITED with Retry-After on every payment
    SLOW = "slow"  # the payment settles, but the answer comes 1.5 s x time_scale later


@dataclass(frozen=True)
class SandboxAccount:
    """One documented test account: its opening balance and how the bank treats it."""

    balance: Decimal
    behaviour: Behaviour = Behaviour.NORMAL
    description: str = ""


# The single list of test accounts: docs/sandbox-bank.md and the tests both refer to it.
TEST_ACCOUNTS: dict[str, SandboxAccount] = {
    "CHK-00012345": SandboxAccount(Decimal("10000.00"), description="the demo's source account"),
    "SAV-00067890": SandboxAccount(Decimal("500.00"), description="the demo's destination account"),
    "CHK-00011111": SandboxAccount(Decimal("2500.00"), description="a spare funded account"),
    "SAV-00022222": SandboxAccount(Decimal("0.00"), description="a spare empty account"),
    "CHK-00000402": SandboxAccount(
        Decimal("5.00"), description="any debit over its balance (5.00) gets 402 INSUFFICIENT_FUNDS"
    ),
    "CHK-00000423": SandboxAccount(Decimal("1000.00"), Behaviour.FROZEN, "frozen: 423 ACCOUNT_FROZEN on any payment"),
    "CHK-00000503": SandboxAccount(
        Decimal("1000.00"), Behaviour.UNAVAILABLE, "core banking down: 503 BANK_UNAVAILABLE on any payment"
    ),
    "CHK-00000429": SandboxAccount(
        Decimal("1000.00"), Behaviour.RATE_LIMITED, "429 RATE_LIMITED with Retry-After: 1 on any payment"
    ),
    "CHK-00001500": SandboxAccount(
        Decimal("1000.00"), Behaviour.SLOW, "slow: answers 1.5 s x time_scale late; the payment settles"
    ),
}


@dataclass(frozen=True)
class LedgerEntry:
    """One settled payment leg. The ledger is append-only: nothing is ever edited or removed."""

    payment_id: str
    type: PaymentType
    account: str
    amount: Decimal
    currency: str
    reference: str
    idempotency_key: str
    at: float


@dataclass
class _Account:
    balance: Decimal
    behaviour: Behaviour


@dataclass(frozen=True)
class _PaymentRequest:
    """A validated payment body. Being frozen and comparable, it doubles as the idempotency fingerprint."""

    type: PaymentType
    account: str
    amount: Decimal
    currency: str
    reference: str


@dataclass(frozen=True)
class _StoredAnswer:
    request: _PaymentRequest
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class _Answer:
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()
    # Applied by the HTTP handler after the state change and outside the lock, so a slow answer models
    # "the bank did it but the reply is late" without holding up other requests.
    delay_seconds: float = 0.0


class _InvalidRequest(Exception):
    pass


def _error(status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()) -> _Answer:
    return _Answer(status, {"error": {"code": code, "message": message}}, headers)


def _format_money(amount: Decimal) -> str:
    # Fixed-point with cents, never exponent notation ("1E+3") and never a float.
    return format(amount.quantize(CENT), "f")


def _check_balance(balance: Decimal) -> Decimal:
    # Floats are refused outright: a balance is money, and 0.1 + 0.2 != 0.3 in binary floating point.
    if not isinstance(balance, Decimal):
        raise TypeError(f"balance must be a decimal.Decimal, not {type(balance).__name__}")
    if not balance.is_finite() or balance < 0:
        raise ValueError(f"balance must be a finite amount >= 0, got {balance}")
    try:
        whole_cents = balance == balance.quantize(CENT)
    except InvalidOperation:
        whole_cents = False
    if not whole_cents:
        raise ValueError(f"balance must have at most 2 decimals, got {balance}")
    return balance


def _behaviour_for(account: str) -> Behaviour:
    # Behaviour belongs to the account number, so a test that gives a special account another balance
    # still gets the documented misbehaviour.
    spec = TEST_ACCOUNTS.get(account)
    return spec.behaviour if spec is not None else Behaviour.NORMAL


def _reject_constant(name: str) -> Any:
    # json accepts NaN/Infinity by default; they are not JSON and have no place in a money API.
    raise ValueError(f"{name} is not valid JSON")


def _parse_payment(raw: bytes) -> _PaymentRequest:
    try:
        # parse_float=Decimal so that no amount ever passes through a binary float on the way in.
        data = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise _InvalidRequest("body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise _InvalidRequest("body must be a JSON object")
    payment_type = data.get("type")
    if payment_type not in PAYMENT_TYPES:
        raise _InvalidRequest(f"type must be one of {', '.join(PAYMENT_TYPES)}")
    strings: dict[str, str] = {}
    for name in ("account", "currency", "reference"):
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise _InvalidRequest(f"{name} must be a non-empty string")
        strings[name] = value
    amount = data.get("amount")
    if not isinstance(amount, str):
        raise _InvalidRequest('amount must be a string such as "250.00", not a JSON number')
    if not _AMOUNT_RE.fullmatch(amount):
        raise _InvalidRequest('amount must be a plain decimal string with at most 2 decimals, such as "250.00"')
    value = Decimal(amount)
    if value <= 0:
        raise _InvalidRequest("amount must be greater than 0")
    return _PaymentRequest(
        type=cast(PaymentType, payment_type),
        account=strings["account"],
        amount=value,
        currency=strings["currency"],
        reference=strings["reference"],
    )


class SandboxBank:
    """An in-memory bank behind a small HTTP API; see the module docstring and docs/sandbox-bank.md."""

    def __init__(self, accounts: dict[str, Decimal] | None = None, *, time_scale: float = 1.0) -> None:
        if not math.isfinite(time_scale) or time_scale < 0:
            raise ValueError(f"time_scale must be a finite number >= 0, got {time_scale}")
        self.time_scale = time_scale
        # One lock for all state: a payment reads the idempotency store, checks a balance and appends to
        # the ledger, and those must happen as one step or concurrent retries could move money twice.
        self._lock = threading.Lock()
        opening = accounts if accounts is not None else {name: spec.balance for name, spec in TEST_ACCOUNTS.items()}
        self._accounts: dict[str, _Account] = {
            name: _Account(_check_balance(balance), _behaviour_for(name)) for name, balance in opening.items()
        }
        self._answers: dict[str, _StoredAnswer] = {}
        self._payments: dict[str, dict[str, Any]] = {}
        self._ledger: list[LedgerEntry] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a background thread; port 0 picks a free port. Returns the base URL."""
        if self._server is not None:
            raise RuntimeError("sandbox bank is already running")
        server = _Server((host, port), self)
        # A short poll interval keeps stop() fast; tests start and stop a bank per test.
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="sandbox-bank", daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread
        self._url = f"http://{host}:{server.server_port}"
        return self._url

    def stop(self) -> None:
        """Stop serving. Safe to call twice. Answers still sleeping (slow account) are abandoned."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = self._url = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("sandbox bank is not running; call start() first")
        return self._url

    def __enter__(self) -> SandboxBank:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- Python-side inspection and setup, for tests ----------------------------------------------------

    def balance(self, account: str) -> Decimal:
        with self._lock:
            if account not in self._accounts:
                raise KeyError(f"no such account: {account}")
            return self._accounts[account].balance

    @property
    def ledger(self) -> list[LedgerEntry]:
        """A copy of the ledger, oldest first."""
        with self._lock:
            return list(self._ledger)

    def count(self, reference: str, type: PaymentType | None = None) -> int:
        """How many ledger entries a transfer reference has, optionally of one type."""
        # A typo such as "debt" would otherwise count 0 and make an assertion pass for the wrong reason.
        if type is not None and type not in PAYMENT_TYPES:
            raise ValueError(f"type must be one of {', '.join(PAYMENT_TYPES)} or None, got {type!r}")
        with self._lock:
            return sum(1 for e in self._ledger if e.reference == reference and (type is None or e.type == type))

    def total_balance(self) -> Decimal:
        """The sum of all balances: a transfer (debit + credit of one amount) must leave it unchanged."""
        with self._lock:
            return sum((a.balance for a in self._accounts.values()), Decimal("0.00"))

    def open_account(self, account: str, balance: Decimal) -> None:
        if not account.strip():
            raise ValueError("account must be a non-empty string")
        _check_balance(balance)
        with self._lock:
            if account in self._accounts:
                raise ValueError(f"account already exists: {account}")
            self._accounts[account] = _Account(balance, _behaviour_for(account))

    def set_balance(self, account: str, balance: Decimal) -> None:
        _check_balance(balance)
        with self._lock:
            if account not in self._accounts:
                raise KeyError(f"no such account: {account}")
            self._accounts[account].balance = balance

    # -- request handling (transport-free, so the rules live in one place) -------------------------------

    def _post_payment(self, idempotency_key: str | None, raw: bytes) -> _Answer:
        if not idempotency_key:
            return _error(400, "IDEMPOTENCY_KEY_REQUIRED", "the Idempotency-Key header is required")
        if len(idempotency_key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            return _error(400, "INVALID_REQUEST", f"Idempotency-Key must be at most {MAX_IDEMPOTENCY_KEY_LENGTH} chars")
        try:
            request = _parse_payment(raw)
        except _InvalidRequest as exc:
            return _error(400, "INVALID_REQUEST", str(exc))
        with self._lock:
            answer = self._settle(idempotency_key, request)
            state = self._accounts.get(request.account)
        if state is not None and state.behaviour is Behaviour.SLOW:
            answer = _Answer(answer.status, answer.body, answer.headers, SLOW_ANSWER_SECONDS * self.time_scale)
        return answer

    def _settle(self, key: str, request: _PaymentRequest) -> _Answer:
        """Decide and apply one payment. Caller holds the lock."""
        stored = self._answers.get(key)
        if stored is not None:
            if stored.request != request:
                return _error(
                    409,
                    "IDEMPOTENCY_KEY_REUSED",
                    "this Idempotency-Key was already used with a different request body",
                )
            return _Answer(stored.status, stored.body, (("Idempotent-Replayed", "true"),))

        state = self._accounts.get(request.account)
        if state is None:
            answer = _error(404, "ACCOUNT_NOT_FOUND", f"no such account: {request.account}")
        elif state.behaviour is Behaviour.UNAVAILABLE:
            answer = _error(503, "BANK_UNAVAILABLE", "core banking is unavailable; retry later")
        elif state.behaviour is Behaviour.RATE_LIMITED:
            answer = _error(
                429,
                "RATE_LIMITED",
                "too many requests; retry after the Retry-After delay",
                (("Retry-After", str(RETRY_AFTER_SECONDS)),),
            )
        elif state.behaviour is Behaviour.FROZEN:
            answer = _error(423, "ACCOUNT_FROZEN", f"account is frozen: {request.account}")
        elif request.type == "debit" and request.amount > state.balance:
            answer = _error(402, "INSUFFICIENT_FUNDS", f"insufficient funds in {request.account}")
        else:
            answer = _Answer(201, self._apply(key, request, state))

        if answer.status < 300 or answer.status in _REPLAYABLE_STATUSES:
            self._answers[key] = _StoredAnswer(request, answer.status, answer.body)
        return answer

    def _apply(self, key: str, request: _PaymentRequest, state: _Account) -> dict[str, Any]:
        """Move the money and write the ledger. Caller holds the lock; all checks have passed."""
        now = time.time()
        payment_id = f"pay_{secrets.token_hex(12)}"
        if request.type == "debit":
            state.balance -= request.amount
        else:
            state.balance += request.amount
        self._ledger.append(
            LedgerEntry(
                payment_id=payment_id,
                type=request.type,
                account=request.account,
                amount=request.amount,
                currency=request.currency,
                reference=request.reference,
                idempotency_key=key,
                at=now,
            )
        )
        body: dict[str, Any] = {
            "paymentId": payment_id,
            "type": request.type,
            "account": request.account,
            "amount": _format_money(request.amount),
            "currency": request.currency,
            "reference": request.reference,
            "idempotencyKey": key,
            "status": "SETTLED",
            "createdAt": now,
        }
        self._payments[key] = body
        return body

    def _get_payment(self, query: str) -> _Answer:
        keys = parse_qs(query).get("idempotencyKey", [])
        if len(keys) != 1 or not keys[0]:
            return _error(400, "INVALID_REQUEST", "exactly one idempotencyKey query parameter is required")
        with self._lock:
            payment = self._payments.get(keys[0])
        if payment is None:
            return _error(404, "PAYMENT_NOT_FOUND", "no settled payment has this idempotency key")
        return _Answer(200, payment)

    def _get_account(self, account: str) -> _Answer:
        with self._lock:
            state = self._accounts.get(account)
            if state is None:
                return _error(404, "ACCOUNT_NOT_FOUND", f"no such account: {account}")
            return _Answer(
                200,
                {
                    "account": account,
                    "balance": _format_money(state.balance),
                    "currency": CURRENCY,
                    "frozen": state.behaviour is Behaviour.FROZEN,
                },
            )


# -- HTTP transport ----------------------------------------------------------------------------------------


_NOT_FOUND = _error(404, "NOT_FOUND", "no such endpoint")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 makes bursts of concurrent clients (the idempotency race test sends 20)
    # hit SYN retransmits, which cost a second each.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], bank: SandboxBank) -> None:
        super().__init__(address, _Handler)
        self.bank = bank

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout on the slow account) is expected, not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "HoldlineSandboxBank/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: a line per request would drown test and demo output.
        return

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/v1/payments":
            self._run(lambda: self.server.bank._get_payment(parts.query))
        elif parts.path.startswith("/v1/accounts/") and parts.path.count("/") == 3:
            account = unquote(parts.path.removeprefix("/v1/accounts/"))
            self._run(lambda: self.server.bank._get_account(account) if account else _NOT_FOUND)
        else:
            self._send(_NOT_FOUND)

    def do_POST(self) -> None:
        # Read the body even when the path is wrong: closing with unread bytes makes the kernel send a
        # reset, and the client would see a connection error instead of our JSON answer.
        raw = self._read_body()
        if urlsplit(self.path).path != "/v1/payments":
            self._send(_NOT_FOUND)
        elif raw is None:
            self._send(_error(400, "INVALID_REQUEST", f"a Content-Length of at most {MAX_BODY_BYTES} is required"))
        else:
            key = self.headers.get("Idempotency-Key")
            self._run(lambda: self.server.bank._post_payment(key, raw))

    def _unsupported(self) -> None:
        # One rule for every route that is not in the API, whatever the method: 404 NOT_FOUND in JSON,
        # rather than http.server's HTML 501 page.
        self._read_body()  # drained for the same reason as in do_POST
        self._send(_NOT_FOUND)

    do_PUT = do_PATCH = do_DELETE = _unsupported

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return None
        if length < 0 or length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length)

    def _run(self, decide: Callable[[], _Answer]) -> None:
        try:
            answer = decide()
        except Exception:
            # Answer like a real bank's 5xx (not stored, so a retry may succeed), then re-raise so the
            # server prints the traceback: a bug in the sandbox should be loud, not a hung client.
            self._send(_error(500, "INTERNAL_ERROR", "the sandbox bank failed; see its traceback"))
            raise
        self._send(answer)

    def _send(self, answer: _Answer) -> None:
        if answer.delay_seconds > 0:
            time.sleep(answer.delay_seconds)
        payload = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
