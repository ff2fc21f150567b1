"""A local sandbox of the third-party bank API that Holdline's Lambda functions call to move money.

It exists so the saga can be exercised end to end without a real bank: it keeps balances and an
append-only ledger in memory, honours ``Idempotency-Key`` the way Stripe does, and has documented test
accounts that misbehave on purpose (frozen, down, rate limited, slow), like a payment provider's test
mode. Tests drive it over HTTP and then inspect it from Python (``balance``, ``ledger``, ``count``).

A fault injector (``inject``) makes it misbehave the way a real bank and network do: latency, 5xx, 429 with
Retry-After, connection resets, a payment committed but answered too late, slow asynchronous settlement,
a leg that fails N times then succeeds. Faults target a leg, an account, or a rate of requests.

Standard library only, so it can run anywhere the tests run. See docs/sandbox-bank.md.
"""

from __future__ import annotations

import json
import math
import random
import re
import secrets
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, cast, get_args
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "LEGS",
    "TEST_ACCOUNTS",
    "Behaviour",
    "Fault",
    "FaultKind",
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
#: The longest Retry-After this bank ever sends (its API contract): the saga's ASL waits at least this long
#: before retrying a leg that was throttled and could not wait the Retry-After out itself.
RETRY_AFTER_CEILING_SECONDS = 5
# Only answers that a retry with the same body must see again are stored: successes and business
# refusals. A 5xx or 429 is transient, so storing it would turn a blip into a permanent failure.
_REPLAYABLE_STATUSES = frozenset({402, 404, 423})
DEFAULT_DAILY_LIMIT = Decimal("10000.00")
DAY_SECONDS = 86400

# What the fault injector can target: a payment by its type, or one of the other calls a client makes.
Leg = Literal["debit", "credit", "refund", "lookup", "account", "screening", "cancel"]
LEGS: tuple[str, ...] = get_args(Leg)


class FaultKind(StrEnum):
    """What an injected fault does to a matching request. Delays are wall-clock seconds (not scaled by
    ``time_scale``): they race against real timeouts, the HTTP client's and the task's."""

    LATENCY = "latency"  # wait ``seconds``, then handle the request: a client that gave up may still move money
    ERROR_5XX = "5xx"  # answer ``status`` (503 by default), do nothing
    # answer ``status`` (any 4xx but 404 or 409, or 5xx), do nothing: what a gateway or a proxy in front of a bank
    # may answer for any request (408 Request Timeout, 403 from a WAF, 400 from a broken proxy)
    ERROR = "error"
    THROTTLE = "429"  # answer 429 RATE_LIMITED with ``Retry-After: retry_after``, do nothing
    CONNECTION_RESET = "reset"  # drop the connection with a TCP reset, do nothing
    TIMEOUT_AFTER_COMMIT = "timeout_after_commit"  # handle it at once (money moves), answer ``seconds`` late
    SLOW_SETTLEMENT = "slow_settlement"  # a payment is accepted PENDING and SETTLED after ``checks`` look-ups
    HOLD = "hold"  # wait until the test calls ``release()`` (at most ``seconds``, 30 if 0), then handle it
    # 409 IDEMPOTENCY_KEY_IN_USE, do nothing: what many banks answer while an earlier request with the same key
    # is still being processed (Stripe's "idempotency_key_in_use"); meant for payments (debit, credit, refund)
    CONFLICT = "409"


@dataclass(eq=False)
class Fault:
    """One injected fault. ``leg``/``account``/``reference`` narrow what it matches (None: anything);
    ``rate`` is the chance a matching request is hit; ``times`` caps the hits (1 = fail once, then succeed)."""

    kind: FaultKind
    leg: Leg | None = None
    account: str | None = None
    reference: str | None = None
    rate: float = 1.0
    times: int | None = None
    seconds: float = 0.0
    status: int = 503
    retry_after: int = RETRY_AFTER_SECONDS
    checks: int = 2
    hits: int = 0
    #: HOLD: set when a request is being held; the request goes on once ``released`` is set.
    entered: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    released: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    def release(self) -> None:
        self.released.set()

    def __post_init__(self) -> None:
        self.kind = FaultKind(self.kind)
        if self.leg is not None and self.leg not in LEGS:
            raise ValueError(f"leg must be one of {', '.join(LEGS)} or None, got {self.leg!r}")
        if not 0 <= self.rate <= 1:
            raise ValueError(f"rate must be between 0 and 1, got {self.rate}")
        if self.times is not None and self.times < 0:
            raise ValueError(f"times must be >= 0 or None, got {self.times}")
        if not math.isfinite(self.seconds) or self.seconds < 0:
            raise ValueError(f"seconds must be a finite number >= 0, got {self.seconds}")
        if self.kind is FaultKind.ERROR:
            # 404 and 409 mean something to the client (not found; key in use or payment exists): faking them
            # would be a different bank, not a failing one.
            if not 400 <= self.status <= 599 or self.status in (404, 409, 429):
                raise ValueError(f"status must be a 4xx (not 404, 409, 429) or a 5xx, got {self.status}")
        elif not 500 <= self.status <= 599:
            raise ValueError(f"status must be a 5xx, got {self.status}")
        if not 0 <= self.retry_after <= RETRY_AFTER_CEILING_SECONDS:
            raise ValueError(f"retry_after must be between 0 and {RETRY_AFTER_CEILING_SECONDS}, got {self.retry_after}")
        if self.checks < 1:
            raise ValueError(f"checks must be >= 1, got {self.checks}")

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def matches(self, leg: Leg, account: str | None, reference: str | None) -> bool:
        return (
            not self.exhausted
            and (self.leg is None or self.leg == leg)
            and (self.account is None or self.account == account)
            and (self.reference is None or self.reference == reference)
        )


class Behaviour(StrEnum):
    """How the sandbox treats payments on an account."""

    NORMAL = "normal"
    FROZEN = "frozen"  # 423 ACCOUNT_FROZEN on every payment
    UNAVAILABLE = "unavailable"  # 503 BANK_UNAVAILABLE on every payment, never stored for replay
    RATE_LIMITED = "rate_limited"  # 429 RATE_LIMITED with Retry-After on every payment
    SLOW = "slow"  # the payment settles, but the answer comes 1.5 s x time_scale later
    FRAUD = "fraud"  # payments work, but a fraud screening naming the account declines


@dataclass(frozen=True)
class SandboxAccount:
    """One documented test account: its opening balance and how the bank treats it."""

    balance: Decimal
    behaviour: Behaviour = Behaviour.NORMAL
    description: str = ""
    daily_limit: Decimal = DEFAULT_DAILY_LIMIT


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
    "CHK-00000451": SandboxAccount(
        Decimal("1000.00"), Behaviour.FRAUD, "a fraud screening that names it declines (DECLINE, SANCTIONS_MATCH)"
    ),
    "CHK-00000460": SandboxAccount(
        Decimal("1000.00"), description="daily debit limit 100.00", daily_limit=Decimal("100.00")
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
    daily_limit: Decimal = DEFAULT_DAILY_LIMIT


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
    # Drop the connection with a TCP reset instead of answering.
    reset: bool = False


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


def _new_account(account: str, balance: Decimal) -> _Account:
    spec = TEST_ACCOUNTS.get(account)
    return _Account(balance, _behaviour_for(account), spec.daily_limit if spec else DEFAULT_DAILY_LIMIT)


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
            name: _new_account(name, _check_balance(balance)) for name, balance in opening.items()
        }
        self._answers: dict[str, _StoredAnswer] = {}
        self._payments: dict[str, dict[str, Any]] = {}
        self._ledger: list[LedgerEntry] = []
        self._faults: list[Fault] = []
        self._pending_checks: dict[str, int] = {}  # idempotency key -> look-ups left before SETTLED
        self._cancelled: set[str] = set()
        # (leg, account, reference, epoch seconds when it reached the bank), for tests
        self._requests: list[tuple[Leg, str | None, str | None, float]] = []
        self._in_flight = 0  # requests being handled or answered (a delayed answer counts until it is sent)
        self._idle = threading.Condition(self._lock)
        self._random = random.Random()  # fault rates, not secrets
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

    def open_account(self, account: str, balance: Decimal, *, daily_limit: Decimal | None = None) -> None:
        if not account.strip():
            raise ValueError("account must be a non-empty string")
        _check_balance(balance)
        if daily_limit is not None:
            _check_balance(daily_limit)
        with self._lock:
            if account in self._accounts:
                raise ValueError(f"account already exists: {account}")
            self._accounts[account] = _new_account(account, balance)
            if daily_limit is not None:
                self._accounts[account].daily_limit = daily_limit

    def set_balance(self, account: str, balance: Decimal) -> None:
        _check_balance(balance)
        with self._lock:
            if account not in self._accounts:
                raise KeyError(f"no such account: {account}")
            self._accounts[account].balance = balance

    # -- the fault injector ----------------------------------------------------------------------------------

    def inject(self, kind: FaultKind | str, **options: Any) -> Fault:
        """Add a fault (see :class:`Fault` for the options); returns it, so a test can read ``hits``.
        Faults are checked in the order they were added; the first that matches a request applies."""
        fault = Fault(FaultKind(kind), **options)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self, *faults: Fault) -> None:
        """Remove the given faults, or all of them."""
        with self._lock:
            self._faults = [f for f in self._faults if faults and f not in faults]

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def requests_seen(self, leg: Leg | None = None, *, reference: str | None = None, account: str | None = None) -> int:
        """How many requests reached the bank (faulted or not), by leg, transfer reference or account."""
        if leg is not None and leg not in LEGS:
            raise ValueError(f"leg must be one of {', '.join(LEGS)} or None, got {leg!r}")
        with self._lock:
            return len(self._seen(leg, reference, account))

    def request_times(
        self, leg: Leg | None = None, *, reference: str | None = None, account: str | None = None
    ) -> list[float]:
        """When each matching request reached the bank (epoch seconds, oldest first), faulted or not: a test
        checks with it that no retry came before the Retry-After the bank asked for."""
        if leg is not None and leg not in LEGS:
            raise ValueError(f"leg must be one of {', '.join(LEGS)} or None, got {leg!r}")
        with self._lock:
            return [at for *_, at in self._seen(leg, reference, account)]

    def _seen(
        self, leg: Leg | None, reference: str | None, account: str | None
    ) -> list[tuple[Leg, str | None, str | None, float]]:
        return [
            seen
            for seen in self._requests
            if (leg is None or seen[0] == leg)
            and (reference is None or seen[2] == reference)
            and (account is None or seen[1] == account)
        ]

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no request is being handled or answered (a latency fault or a late answer still counts):
        a test checks the ledger only once every request a timed-out client left behind has landed or not."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1

    def _leave(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def _pick_fault(self, leg: Leg, account: str | None, reference: str | None) -> Fault | None:
        """Record the request and pick the fault that hits it, if any. Caller holds the lock."""
        self._requests.append((leg, account, reference, time.time()))
        for fault in self._faults:
            if fault.matches(leg, account, reference) and (fault.rate >= 1 or self._random.random() < fault.rate):
                fault.hits += 1
                return fault
        return None

    def _before(self, leg: Leg, account: str | None, reference: str | None) -> tuple[_Answer | None, Fault | None]:
        """Apply the part of a fault that comes before the bank does anything: an answer that replaces the
        real one (5xx, 429, reset), or latency. Not under the lock: a slow request must not hold up others."""
        with self._lock:
            fault = self._pick_fault(leg, account, reference)
        if fault is None:
            return None, None
        if fault.kind is FaultKind.ERROR and fault.status < 500:
            return _error(fault.status, "INJECTED_CLIENT_ERROR", "injected fault: refused in front of the bank"), fault
        if fault.kind in (FaultKind.ERROR_5XX, FaultKind.ERROR):
            code = "BANK_UNAVAILABLE" if fault.status == 503 else "INTERNAL_ERROR"
            return _error(fault.status, code, "injected fault: the bank failed; retry later"), fault
        if fault.kind is FaultKind.THROTTLE:
            headers = (("Retry-After", str(fault.retry_after)),)
            return _error(429, "RATE_LIMITED", "injected fault: too many requests", headers), fault
        if fault.kind is FaultKind.CONFLICT:
            message = "injected fault: a request with this Idempotency-Key is still being processed; retry later"
            return _error(409, "IDEMPOTENCY_KEY_IN_USE", message), fault
        if fault.kind is FaultKind.CONNECTION_RESET:
            return _Answer(0, {}, reset=True), fault
        if fault.kind is FaultKind.LATENCY:
            time.sleep(fault.seconds)
        if fault.kind is FaultKind.HOLD:
            fault.entered.set()
            fault.released.wait(fault.seconds or 30)
        return None, fault

    @staticmethod
    def _after(answer: _Answer, fault: Fault | None) -> _Answer:
        """Hold an answer back after the work is done (the client may time out; the money moved)."""
        if fault is None or fault.kind is not FaultKind.TIMEOUT_AFTER_COMMIT:
            return answer
        return _Answer(answer.status, answer.body, answer.headers, answer.delay_seconds + fault.seconds)

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
        early, fault = self._before(request.type, request.account, request.reference)
        if early is not None:
            return early
        pending = fault.checks if fault is not None and fault.kind is FaultKind.SLOW_SETTLEMENT else 0
        with self._lock:
            answer = self._settle(idempotency_key, request, pending)
            state = self._accounts.get(request.account)
        if state is not None and state.behaviour is Behaviour.SLOW:
            answer = _Answer(answer.status, answer.body, answer.headers, SLOW_ANSWER_SECONDS * self.time_scale)
        return self._after(answer, fault)

    def _settle(self, key: str, request: _PaymentRequest, pending_checks: int = 0) -> _Answer:
        """Decide and apply one payment. Caller holds the lock."""
        stored = self._answers.get(key)
        if stored is not None:
            if stored.request != request:
                return _error(
                    409,
                    "IDEMPOTENCY_KEY_REUSED",
                    "this Idempotency-Key was already used with a different request body",
                )
            return _Answer(stored.status, dict(stored.body), (("Idempotent-Replayed", "true"),))
        if key in self._cancelled:
            return _error(409, "IDEMPOTENCY_KEY_CANCELLED", "this Idempotency-Key was cancelled; nothing was done")

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
            answer = _Answer(201, self._apply(key, request, state, pending_checks))

        if answer.status < 300 or answer.status in _REPLAYABLE_STATUSES:
            self._answers[key] = _StoredAnswer(request, answer.status, answer.body)
        return answer

    def _apply(self, key: str, request: _PaymentRequest, state: _Account, pending_checks: int = 0) -> dict[str, Any]:
        """Move the money and write the ledger. Caller holds the lock; all checks have passed.

        With ``pending_checks`` the payment is accepted PENDING (the money has moved, as a hold does) and
        reported SETTLED only after that many look-ups: the bank's slow asynchronous settlement."""
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
            "status": "PENDING" if pending_checks > 0 else "SETTLED",
            "createdAt": now,
        }
        if pending_checks > 0:
            self._pending_checks[key] = pending_checks
        self._payments[key] = body
        return dict(body)

    def _get_payment(self, query: str) -> _Answer:
        keys = parse_qs(query).get("idempotencyKey", [])
        if len(keys) != 1 or not keys[0]:
            return _error(400, "INVALID_REQUEST", "exactly one idempotencyKey query parameter is required")
        key = keys[0]
        with self._lock:
            known = self._payments.get(key)
        account = str(known["account"]) if known else None
        early, fault = self._before("lookup", account, _reference_of(key))
        if early is not None:
            return early
        with self._lock:
            payment = self._payments.get(key)
            if payment is not None and key in self._pending_checks:
                self._pending_checks[key] -= 1
                if self._pending_checks[key] <= 0:
                    del self._pending_checks[key]
                    payment["status"] = "SETTLED"
            answer = (
                _error(404, "PAYMENT_NOT_FOUND", "no payment has this idempotency key")
                if payment is None
                else _Answer(200, dict(payment))
            )
        return self._after(answer, fault)

    def _cancel(self, raw: bytes) -> _Answer:
        """Burn an idempotency key that has no payment, so a request with it that lands late moves nothing.
        If a payment already exists under the key, 409 PAYMENT_EXISTS carries it: the caller must undo it."""
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        key = data.get("idempotencyKey") if isinstance(data, dict) else None
        if not isinstance(key, str) or not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            return _error(400, "INVALID_REQUEST", "idempotencyKey must be a non-empty string of at most 255 chars")
        with self._lock:
            known = self._payments.get(key)
        # Like a look-up, a cancellation matches the account of the payment it finds (None if there is none).
        early, fault = self._before("cancel", str(known["account"]) if known else None, _reference_of(key))
        if early is not None:
            return early
        with self._lock:
            payment = self._payments.get(key)
            if payment is not None:
                body = {"error": {"code": "PAYMENT_EXISTS", "message": "a payment has this key"}, "payment": payment}
                answer = _Answer(409, dict(body))
            else:
                self._cancelled.add(key)
                answer = _Answer(200, {"idempotencyKey": key, "status": "CANCELLED"})
        return self._after(answer, fault)

    def _screen(self, raw: bytes) -> _Answer:
        """A fraud screening of a transfer: APPROVE, or DECLINE when either account is flagged."""
        try:
            data = json.loads(raw, parse_float=Decimal)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not all(
            isinstance(data.get(name), str) and data[name] for name in ("account", "counterparty", "reference")
        ):
            return _error(400, "INVALID_REQUEST", "account, counterparty and reference must be non-empty strings")
        early, fault = self._before("screening", data["account"], data["reference"])
        if early is not None:
            return early
        flagged = [a for a in (data["account"], data["counterparty"]) if _behaviour_for(a) is Behaviour.FRAUD]
        body = {"reference": data["reference"], "decision": "DECLINE" if flagged else "APPROVE"}
        if flagged:
            body["reason"] = "SANCTIONS_MATCH"
        return self._after(_Answer(200, body), fault)

    def _get_account(self, account: str) -> _Answer:
        early, fault = self._before("account", account, None)
        if early is not None:
            return early
        since = time.time() - DAY_SECONDS
        with self._lock:
            state = self._accounts.get(account)
            if state is None:
                return self._after(_error(404, "ACCOUNT_NOT_FOUND", f"no such account: {account}"), fault)
            # What left the account in the last 24 h, net of refunds: what a daily limit is checked against.
            moved = sum(
                (e.amount if e.type == "debit" else -e.amount)
                for e in self._ledger
                if e.account == account and e.at >= since and e.type in ("debit", "refund")
            )
            answer = _Answer(
                200,
                {
                    "account": account,
                    "balance": _format_money(state.balance),
                    "currency": CURRENCY,
                    "frozen": state.behaviour is Behaviour.FROZEN,
                    "dailyLimit": _format_money(state.daily_limit),
                    "debitedToday": _format_money(max(Decimal("0"), Decimal(moved))),
                },
            )
        return self._after(answer, fault)


def _reference_of(key: str) -> str:
    # Holdline's keys are "{reference}:{leg}"; anything else is its own reference.
    return key.rsplit(":", 1)[0]


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
        path = urlsplit(self.path).path
        bank = self.server.bank
        routes: dict[str, Callable[[bytes], _Answer]] = {
            "/v1/payments": lambda body: bank._post_payment(self.headers.get("Idempotency-Key"), body),
            "/v1/cancellations": bank._cancel,
            "/v1/screenings": bank._screen,
        }
        route = routes.get(path)
        if route is None:
            self._send(_NOT_FOUND)
        elif raw is None:
            self._send(_error(400, "INVALID_REQUEST", f"a Content-Length of at most {MAX_BODY_BYTES} is required"))
        else:
            self._run(lambda: route(raw))

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
        bank = self.server.bank
        bank._enter()
        try:
            try:
                answer = decide()
            except Exception:
                # Answer like a real bank's 5xx (not stored, so a retry may succeed), then re-raise so the
                # server prints the traceback: a bug in the sandbox should be loud, not a hung client.
                self._send(_error(500, "INTERNAL_ERROR", "the sandbox bank failed; see its traceback"))
                raise
            self._send(answer)
        finally:
            bank._leave()

    def finish(self) -> None:
        if getattr(self, "_reset", False):
            return  # the socket is gone on purpose: nothing to flush
        super().finish()

    def _send(self, answer: _Answer) -> None:
        if answer.reset:
            # SO_LINGER with a zero timeout makes close() send a TCP RST: the client sees "connection reset".
            self._reset = True
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
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
