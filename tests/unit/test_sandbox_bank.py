"""The sandbox bank, driven over real HTTP the way the Lambda functions will drive it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from holdline_local.sandbox_bank import (
    RETRY_AFTER_CEILING_SECONDS,
    TEST_ACCOUNTS,
    Behaviour,
    FaultKind,
    PaymentType,
    SandboxBank,
)

SOURCE = "CHK-00012345"
DESTINATION = "SAV-00067890"
EMPTY = "SAV-00022222"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "sandbox-bank.md"
TIMEOUT = 5.0


@pytest.fixture
def bank() -> Iterator[SandboxBank]:
    # time_scale shrinks the slow account's 1.5 s to 15 ms so the suite stays fast.
    sandbox = SandboxBank(time_scale=0.01)
    sandbox.start(port=0)
    yield sandbox
    sandbox.stop()


def payment(
    type: str = "debit",
    account: str = SOURCE,
    amount: Any = "250.00",
    currency: str = "USD",
    reference: str = "tr-1",
) -> dict[str, Any]:
    return {"type": type, "account": account, "amount": amount, "currency": currency, "reference": reference}


def post(bank: SandboxBank, key: str | None, body: Any, timeout: Any = TIMEOUT) -> requests.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return requests.post(f"{bank.url}/v1/payments", json=body, headers=headers, timeout=timeout)


def error_code(response: requests.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


# -- money moves -----------------------------------------------------------------------------------------


def test_debit_subtracts_and_writes_one_ledger_entry(bank: SandboxBank) -> None:
    response = post(bank, "k-debit", payment("debit", SOURCE, "250.00", reference="tr-debit"))

    assert response.status_code == 201
    body = response.json()
    assert body["paymentId"].startswith("pay_")
    assert body["type"] == "debit"
    assert body["account"] == SOURCE
    assert body["amount"] == "250.00"
    assert body["currency"] == "USD"
    assert body["reference"] == "tr-debit"
    assert body["idempotencyKey"] == "k-debit"
    assert body["status"] == "SETTLED"
    assert isinstance(body["createdAt"], float)
    assert "balance" not in body
    assert "Idempotent-Replayed" not in response.headers

    assert bank.balance(SOURCE) == Decimal("9750.00")
    [entry] = bank.ledger
    assert entry.payment_id == body["paymentId"]
    assert (entry.type, entry.account, entry.amount, entry.currency) == ("debit", SOURCE, Decimal("250"), "USD")
    assert (entry.reference, entry.idempotency_key) == ("tr-debit", "k-debit")
    assert isinstance(entry.amount, Decimal)
    assert bank.count("tr-debit") == 1
    assert bank.count("tr-debit", "debit") == 1
    assert bank.count("tr-debit", "credit") == 0


@pytest.mark.parametrize("kind", ["credit", "refund"])
def test_credit_and_refund_add_to_the_balance(bank: SandboxBank, kind: PaymentType) -> None:
    response = post(bank, f"k-{kind}", payment(kind, DESTINATION, "120.50", reference="tr-in"))

    assert response.status_code == 201
    assert response.json()["type"] == kind
    assert bank.balance(DESTINATION) == Decimal("620.50")
    assert bank.count("tr-in", kind) == 1
    assert [e.type for e in bank.ledger] == [kind]


def test_amounts_are_exact_decimals_not_floats(bank: SandboxBank) -> None:
    # With binary floats three credits of 0.10 give 0.30000000000000004.
    for i in range(3):
        assert post(bank, f"k-dime-{i}", payment("credit", EMPTY, "0.10", reference="tr-dimes")).ok

    assert bank.balance(EMPTY) == Decimal("0.30")
    account = requests.get(f"{bank.url}/v1/accounts/{EMPTY}", timeout=TIMEOUT).json()
    assert account["balance"] == "0.30"


def test_a_transfer_conserves_the_total_balance(bank: SandboxBank) -> None:
    before = bank.total_balance()

    debit = post(bank, "tr-9:debit", payment("debit", SOURCE, "1234.56", reference="tr-9"))
    credit = post(bank, "tr-9:credit", payment("credit", DESTINATION, "1234.56", reference="tr-9"))

    assert (debit.status_code, credit.status_code) == (201, 201)
    assert bank.balance(SOURCE) == Decimal("8765.44")
    assert bank.balance(DESTINATION) == Decimal("1734.56")
    assert bank.total_balance() == before
    assert bank.count("tr-9") == 2


# -- idempotency -----------------------------------------------------------------------------------------


def test_replay_with_the_same_key_returns_the_same_payment_and_moves_money_once(bank: SandboxBank) -> None:
    body = payment(reference="tr-replay")
    first = post(bank, "k-replay", body)
    second = post(bank, "k-replay", body)

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert bank.balance(SOURCE) == Decimal("9750.00")
    assert bank.count("tr-replay") == 1


def test_twenty_concurrent_requests_with_one_key_settle_exactly_once(
    bank: SandboxBank, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Settling takes microseconds, so requests rarely overlap on their own. Making the money move slow
    # holds the first request inside the critical section while the other 19 arrive: without the lock
    # they would all see "no stored answer" and settle again, every time rather than once in a while.
    apply = bank._apply

    def slow_apply(*args: Any) -> dict[str, Any]:
        time.sleep(0.02)
        return apply(*args)

    monkeypatch.setattr(bank, "_apply", slow_apply)
    body = payment(reference="tr-race")
    barrier = threading.Barrier(20)
    responses: list[requests.Response] = []
    lock = threading.Lock()

    def send() -> None:
        barrier.wait()
        response = post(bank, "k-race", body)
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIMEOUT)

    assert len(responses) == 20
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["paymentId"] for r in responses}) == 1
    assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1
    assert bank.count("tr-race") == 1
    assert bank.balance(SOURCE) == Decimal("9750.00")


@pytest.mark.parametrize(
    "change",
    [
        {"amount": "250.01"},
        {"account": "CHK-00011111"},
        {"type": "credit"},
        {"reference": "tr-other"},
        {"currency": "EUR"},
    ],
)
def test_same_key_with_a_different_body_is_refused(bank: SandboxBank, change: dict[str, str]) -> None:
    first = post(bank, "k-reuse", payment(reference="tr-reuse"))
    assert first.status_code == 201
    balances = {name: bank.balance(name) for name in TEST_ACCOUNTS}

    second = post(bank, "k-reuse", {**payment(reference="tr-reuse"), **change})

    assert second.status_code == 409
    assert error_code(second) == "IDEMPOTENCY_KEY_REUSED"
    assert len(bank.ledger) == 1
    assert {name: bank.balance(name) for name in TEST_ACCOUNTS} == balances


def test_the_same_amount_written_differently_is_the_same_body(bank: SandboxBank) -> None:
    first = post(bank, "k-cents", payment(amount="250.5"))
    second = post(bank, "k-cents", payment(amount="250.50"))

    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json()["paymentId"] == first.json()["paymentId"]
    assert second.json()["amount"] == "250.50"
    assert len(bank.ledger) == 1


def test_business_refusals_are_stored_for_replay(bank: SandboxBank) -> None:
    body = payment("debit", "CHK-00000402", "50.00", reference="tr-poor")
    first = post(bank, "k-poor", body)
    # Funding the account afterwards must not change the answer for the same key: a retry sees the
    # original refusal, exactly like the first answer.
    bank.set_balance("CHK-00000402", Decimal("1000.00"))
    second = post(bank, "k-poor", body)

    assert first.status_code == second.status_code == 402
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert bank.ledger == []


@pytest.mark.parametrize("account", ["CHK-00000503", "CHK-00000429"])
def test_transient_failures_are_not_stored_for_replay(bank: SandboxBank, account: str) -> None:
    failed = post(bank, "k-transient", payment(account=account, reference="tr-transient"))
    assert failed.status_code in (429, 503)

    again = post(bank, "k-transient", payment(account=account, reference="tr-transient"))
    assert again.status_code == failed.status_code
    assert "Idempotent-Replayed" not in again.headers
    lookup = requests.get(f"{bank.url}/v1/payments", params={"idempotencyKey": "k-transient"}, timeout=TIMEOUT)
    assert lookup.status_code == 404
    # Had the failure been stored, reusing the key with another body would be a 409.
    retry = post(bank, "k-transient", payment(account=SOURCE, reference="tr-transient"))
    assert retry.status_code == 201
    assert bank.count("tr-transient") == 1


# -- lookup by idempotency key ---------------------------------------------------------------------------


def test_a_payment_can_be_looked_up_by_its_idempotency_key(bank: SandboxBank) -> None:
    created = post(bank, "tr-5:debit", payment(reference="tr-5"))

    found = requests.get(f"{bank.url}/v1/payments", params={"idempotencyKey": "tr-5:debit"}, timeout=TIMEOUT)
    missing = requests.get(f"{bank.url}/v1/payments", params={"idempotencyKey": "tr-5:credit"}, timeout=TIMEOUT)
    no_key = requests.get(f"{bank.url}/v1/payments", timeout=TIMEOUT)

    assert found.status_code == 200
    assert found.json() == created.json()
    assert missing.status_code == 404
    assert error_code(missing) == "PAYMENT_NOT_FOUND"
    assert no_key.status_code == 400
    assert error_code(no_key) == "INVALID_REQUEST"


def test_a_refused_payment_is_not_found_by_lookup(bank: SandboxBank) -> None:
    assert post(bank, "k-frozen", payment(account="CHK-00000423")).status_code == 423

    lookup = requests.get(f"{bank.url}/v1/payments", params={"idempotencyKey": "k-frozen"}, timeout=TIMEOUT)
    assert lookup.status_code == 404


# -- documented test accounts ----------------------------------------------------------------------------


def test_the_bank_opens_with_the_documented_test_accounts(bank: SandboxBank) -> None:
    for name, spec in TEST_ACCOUNTS.items():
        assert bank.balance(name) == spec.balance
    assert bank.total_balance() == sum((s.balance for s in TEST_ACCOUNTS.values()), Decimal(0))


def test_the_docs_list_every_test_account() -> None:
    text = DOCS.read_text()
    for name, spec in TEST_ACCOUNTS.items():
        assert name in text, f"{name} is missing from {DOCS.name}"
        assert f"{spec.balance:.2f}" in text
    assert "CHK-00000404" in text


def test_insufficient_funds(bank: SandboxBank) -> None:
    refused = post(bank, "k-402-a", payment("debit", "CHK-00000402", "5.01", reference="tr-402"))
    assert refused.status_code == 402
    assert error_code(refused) == "INSUFFICIENT_FUNDS"
    assert bank.balance("CHK-00000402") == Decimal("5.00")

    exact = post(bank, "k-402-b", payment("debit", "CHK-00000402", "5.00", reference="tr-402"))
    assert exact.status_code == 201
    assert bank.balance("CHK-00000402") == Decimal("0.00")
    assert bank.count("tr-402") == 1


@pytest.mark.parametrize("kind", ["debit", "credit", "refund"])
def test_frozen_account_refuses_every_payment(bank: SandboxBank, kind: str) -> None:
    response = post(bank, f"k-423-{kind}", payment(kind, "CHK-00000423", "1.00"))

    assert response.status_code == 423
    assert error_code(response) == "ACCOUNT_FROZEN"
    assert bank.balance("CHK-00000423") == Decimal("1000.00")
    assert bank.ledger == []


@pytest.mark.parametrize("kind", ["debit", "credit"])
def test_unavailable_account_answers_503(bank: SandboxBank, kind: str) -> None:
    response = post(bank, f"k-503-{kind}", payment(kind, "CHK-00000503", "1.00"))

    assert response.status_code == 503
    assert error_code(response) == "BANK_UNAVAILABLE"
    assert bank.balance("CHK-00000503") == Decimal("1000.00")
    assert bank.ledger == []


def test_rate_limited_account_answers_429_with_retry_after(bank: SandboxBank) -> None:
    response = post(bank, "k-429", payment(account="CHK-00000429", amount="1.00"))

    assert response.status_code == 429
    assert error_code(response) == "RATE_LIMITED"
    assert response.headers["Retry-After"] == "1"
    assert bank.balance("CHK-00000429") == Decimal("1000.00")
    assert bank.ledger == []


def test_slow_account_answers_late_but_settles(bank: SandboxBank) -> None:
    started = time.monotonic()
    response = post(bank, "k-slow", payment(account="CHK-00001500", amount="1.00"))
    elapsed = time.monotonic() - started

    assert response.status_code == 201
    assert elapsed >= 1.5 * bank.time_scale
    assert bank.balance("CHK-00001500") == Decimal("999.00")


def test_a_client_that_times_out_on_the_slow_account_can_find_and_replay_the_payment() -> None:
    # The case idempotency exists for: the bank moved the money but the caller never saw the answer.
    with SandboxBank(time_scale=0.1) as bank:  # 0.15 s answers
        body = payment(account="CHK-00001500", amount="10.00", reference="tr-late")
        with pytest.raises(requests.exceptions.ReadTimeout):
            post(bank, "k-late", body, timeout=(TIMEOUT, 0.03))

        lookup_url = f"{bank.url}/v1/payments"
        deadline = time.monotonic() + TIMEOUT
        lookup = requests.get(lookup_url, params={"idempotencyKey": "k-late"}, timeout=TIMEOUT)
        while lookup.status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.01)
            lookup = requests.get(lookup_url, params={"idempotencyKey": "k-late"}, timeout=TIMEOUT)
        assert lookup.status_code == 200

        retry = post(bank, "k-late", body)
        assert retry.status_code == 201
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert retry.json()["paymentId"] == lookup.json()["paymentId"]
        assert bank.count("tr-late") == 1
        assert bank.balance("CHK-00001500") == Decimal("990.00")


def test_unknown_account_is_404_and_stored(bank: SandboxBank) -> None:
    body = payment("credit", "CHK-00000404", "1.00")
    first = post(bank, "k-404", body)
    again = post(bank, "k-404", body)

    assert first.status_code == again.status_code == 404
    assert error_code(first) == "ACCOUNT_NOT_FOUND"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert bank.ledger == []


def test_accounts_endpoint(bank: SandboxBank) -> None:
    source = requests.get(f"{bank.url}/v1/accounts/{SOURCE}", timeout=TIMEOUT)
    frozen = requests.get(f"{bank.url}/v1/accounts/CHK-00000423", timeout=TIMEOUT)
    unknown = requests.get(f"{bank.url}/v1/accounts/CHK-00000404", timeout=TIMEOUT)

    assert source.status_code == 200
    assert source.json() == {
        "account": SOURCE,
        "balance": "10000.00",
        "currency": "USD",
        "frozen": False,
        "dailyLimit": "10000.00",
        "debitedToday": "0.00",
    }
    assert frozen.json()["frozen"] is True
    assert unknown.status_code == 404
    assert error_code(unknown) == "ACCOUNT_NOT_FOUND"


# -- validation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount",
    ["-5.00", "0", "0.00", "1e3", 1.5, 100, "1.234", "abc", "", " 1.00", "NaN", "Infinity", None, "1234567890123"],
)
def test_invalid_amounts_are_refused(bank: SandboxBank, amount: Any) -> None:
    response = post(bank, "k-amount", payment(amount=amount))

    assert response.status_code == 400
    assert error_code(response) == "INVALID_REQUEST"
    assert bank.balance(SOURCE) == Decimal("10000.00")
    assert bank.ledger == []


@pytest.mark.parametrize(
    "body",
    [
        {**payment(), "type": "transfer"},
        {**payment(), "account": ""},
        {**payment(), "account": 12345},
        {**payment(), "currency": " "},
        {k: v for k, v in payment().items() if k != "reference"},
        ["not", "an", "object"],
    ],
)
def test_invalid_bodies_are_refused(bank: SandboxBank, body: Any) -> None:
    response = post(bank, "k-body", body)

    assert response.status_code == 400
    assert error_code(response) == "INVALID_REQUEST"
    assert bank.ledger == []


def test_a_refused_body_does_not_burn_the_key(bank: SandboxBank) -> None:
    assert post(bank, "k-fix", payment(amount="1.234")).status_code == 400
    assert post(bank, "k-fix", payment(amount="1.23")).status_code == 201


def test_idempotency_key_is_required_and_bounded(bank: SandboxBank) -> None:
    missing = post(bank, None, payment())
    empty = post(bank, "", payment())
    too_long = post(bank, "k" * 256, payment())
    longest = post(bank, "k" * 255, payment())

    assert (missing.status_code, error_code(missing)) == (400, "IDEMPOTENCY_KEY_REQUIRED")
    assert (empty.status_code, error_code(empty)) == (400, "IDEMPOTENCY_KEY_REQUIRED")
    assert (too_long.status_code, error_code(too_long)) == (400, "INVALID_REQUEST")
    assert longest.status_code == 201
    assert len(bank.ledger) == 1


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"amount": NaN}'])
def test_bad_json_is_400(bank: SandboxBank, raw: bytes) -> None:
    response = requests.post(
        f"{bank.url}/v1/payments",
        data=raw,
        headers={"Idempotency-Key": "k-json", "Content-Type": "application/json"},
        timeout=TIMEOUT,
    )

    assert response.status_code == 400
    assert error_code(response) == "INVALID_REQUEST"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/nothing"), ("POST", "/v1/payment"), ("GET", "/v1/accounts/"), ("DELETE", "/v1/payments")],
)
def test_other_routes_are_404(bank: SandboxBank, method: str, path: str) -> None:
    response = requests.request(method, f"{bank.url}{path}", timeout=TIMEOUT)

    assert response.status_code == 404
    assert error_code(response) == "NOT_FOUND"


# -- Python-side API -------------------------------------------------------------------------------------


def test_ledger_is_a_copy(bank: SandboxBank) -> None:
    post(bank, "k-copy", payment())
    bank.ledger.clear()

    assert len(bank.ledger) == 1


def test_count_refuses_an_unknown_type(bank: SandboxBank) -> None:
    with pytest.raises(ValueError, match="type"):
        bank.count("tr-1", "debt")  # type: ignore[arg-type]


def test_open_and_set_balance(bank: SandboxBank) -> None:
    bank.open_account("CHK-00077777", Decimal("42.00"))
    bank.set_balance(SOURCE, Decimal("1.00"))

    assert post(bank, "k-open", payment("debit", "CHK-00077777", "42.00")).status_code == 201
    assert bank.balance("CHK-00077777") == Decimal("0.00")
    assert post(bank, "k-set", payment("debit", SOURCE, "1.01")).status_code == 402
    with pytest.raises(ValueError, match="exists"):
        bank.open_account(SOURCE, Decimal("1.00"))
    with pytest.raises(KeyError):
        bank.set_balance("CHK-00000404", Decimal("1.00"))
    with pytest.raises(TypeError):
        bank.set_balance(SOURCE, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 decimals"):
        bank.set_balance(SOURCE, Decimal("1.005"))


def test_custom_accounts_keep_the_documented_behaviour() -> None:
    sandbox = SandboxBank({"CHK-00000423": Decimal("7.00"), "ACME-1": Decimal("3.00")})

    assert TEST_ACCOUNTS["CHK-00000423"].behaviour is Behaviour.FROZEN
    assert sandbox.total_balance() == Decimal("10.00")
    with pytest.raises(KeyError):
        sandbox.balance(SOURCE)
    with sandbox:
        assert post(sandbox, "k-custom", payment(account="CHK-00000423", amount="1.00")).status_code == 423
        assert post(sandbox, "k-acme", payment(account="ACME-1", amount="1.00")).status_code == 201


def test_stop_closes_the_port() -> None:
    sandbox = SandboxBank()
    url = sandbox.start()
    assert requests.get(f"{url}/v1/accounts/{SOURCE}", timeout=TIMEOUT).status_code == 200
    sandbox.stop()
    sandbox.stop()  # idempotent

    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{url}/v1/accounts/{SOURCE}", timeout=TIMEOUT)
    with pytest.raises(RuntimeError):
        _ = sandbox.url


def test_the_bank_prints_nothing_per_request(bank: SandboxBank, capfd: pytest.CaptureFixture[str]) -> None:
    post(bank, "k-quiet", payment())
    requests.get(f"{bank.url}/v1/nothing", timeout=TIMEOUT)

    captured = capfd.readouterr()
    assert (captured.out, captured.err) == ("", "")


# -- the fault injector ------------------------------------------------------------------------------------


def lookup(bank: SandboxBank, key: str) -> requests.Response:
    return requests.get(f"{bank.url}/v1/payments", params={"idempotencyKey": key}, timeout=TIMEOUT)


def test_5xx_fault_fails_once_then_succeeds(bank: SandboxBank) -> None:
    fault = bank.inject(FaultKind.ERROR_5XX, leg="debit", times=1)
    first = post(bank, "f-5xx", payment(reference="tr-f"))
    second = post(bank, "f-5xx", payment(reference="tr-f"))

    assert (first.status_code, error_code(first)) == (503, "BANK_UNAVAILABLE")
    assert second.status_code == 201 and "Idempotent-Replayed" not in second.headers
    assert fault.hits == 1 and fault.exhausted
    assert bank.count("tr-f") == 1
    assert bank.requests_seen("debit", reference="tr-f") == 2


def test_faults_target_a_leg_and_an_account(bank: SandboxBank) -> None:
    bank.inject(FaultKind.ERROR_5XX, leg="credit", account=DESTINATION, status=500)

    assert post(bank, "f-a", payment("debit", SOURCE)).status_code == 201
    assert post(bank, "f-b", payment("credit", EMPTY)).status_code == 201
    refused = post(bank, "f-c", payment("credit", DESTINATION))
    assert (refused.status_code, error_code(refused)) == (500, "INTERNAL_ERROR")


def test_fault_rate(bank: SandboxBank) -> None:
    never = bank.inject(FaultKind.ERROR_5XX, leg="debit", rate=0.0)
    for i in range(5):
        assert post(bank, f"f-rate-{i}", payment(amount="1.00")).status_code == 201
    assert never.hits == 0
    bank.clear_faults()
    bank.inject(FaultKind.ERROR_5XX, leg="debit", rate=0.5)
    statuses = {post(bank, f"f-half-{i}", payment(amount="1.00")).status_code for i in range(40)}
    assert statuses == {201, 503}


def test_throttle_fault_sends_retry_after(bank: SandboxBank) -> None:
    bank.inject(FaultKind.THROTTLE, retry_after=3)
    response = post(bank, "f-429", payment())
    assert (response.status_code, response.headers["Retry-After"]) == (429, "3")
    assert bank.ledger == []


def test_retry_after_stays_under_the_banks_ceiling(bank: SandboxBank) -> None:
    with pytest.raises(ValueError, match="retry_after"):
        bank.inject(FaultKind.THROTTLE, retry_after=RETRY_AFTER_CEILING_SECONDS + 1)
    assert bank.faults == []


def test_conflict_fault_answers_key_in_use_and_does_nothing(bank: SandboxBank) -> None:
    bank.inject(FaultKind.CONFLICT, leg="debit", times=1)
    refused = post(bank, "f-409", payment(reference="tr-409"))
    assert (refused.status_code, error_code(refused)) == (409, "IDEMPOTENCY_KEY_IN_USE")
    assert bank.ledger == []
    assert post(bank, "f-409", payment(reference="tr-409")).status_code == 201  # not stored: the retry goes on


def test_request_times_say_when_each_request_arrived(bank: SandboxBank) -> None:
    before = time.time()
    post(bank, "t-1", payment(reference="tr-times"))
    time.sleep(0.05)
    post(bank, "t-1", payment(reference="tr-times"))
    times = bank.request_times("debit", reference="tr-times")
    assert len(times) == 2 and before <= times[0] and times[1] - times[0] >= 0.05
    assert bank.request_times("credit", reference="tr-times") == []


def test_wait_idle_waits_for_a_late_answer(bank: SandboxBank) -> None:
    bank.inject(FaultKind.LATENCY, leg="debit", seconds=0.5)
    with pytest.raises(requests.exceptions.Timeout):
        post(bank, "w-1", payment(reference="tr-idle"), timeout=0.1)
    assert bank.count("tr-idle") == 0  # the client gave up; the bank has not handled it yet
    assert bank.wait_idle(5)
    assert bank.count("tr-idle") == 1  # ... and then it landed


def test_a_cancellation_matches_the_account_of_the_payment_it_finds(bank: SandboxBank) -> None:
    post(bank, "c-1", payment(reference="tr-cancel"))
    bank.inject(FaultKind.ERROR_5XX, leg="cancel", account=SOURCE, times=1)
    cancel = requests.post(f"{bank.url}/v1/cancellations", json={"idempotencyKey": "c-1"}, timeout=TIMEOUT)
    assert cancel.status_code == 503
    burnt = requests.post(f"{bank.url}/v1/cancellations", json={"idempotencyKey": "c-2"}, timeout=TIMEOUT)
    assert burnt.status_code == 200  # no payment under it: no account, the fault does not match


def test_connection_reset_fault(bank: SandboxBank) -> None:
    bank.inject(FaultKind.CONNECTION_RESET, leg="debit", times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        post(bank, "f-reset", payment())
    assert bank.ledger == []
    assert post(bank, "f-reset", payment()).status_code == 201


def test_latency_fault_delays_the_work(bank: SandboxBank) -> None:
    bank.inject(FaultKind.LATENCY, leg="account", seconds=0.2)
    started = time.monotonic()
    assert requests.get(f"{bank.url}/v1/accounts/{SOURCE}", timeout=TIMEOUT).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_timeout_after_commit_moves_the_money_but_the_client_times_out(bank: SandboxBank) -> None:
    bank.inject(FaultKind.TIMEOUT_AFTER_COMMIT, leg="debit", times=1, seconds=1.0)
    with pytest.raises(requests.exceptions.Timeout):
        post(bank, "f-commit", payment(reference="tr-commit"), timeout=0.3)
    assert bank.count("tr-commit", "debit") == 1
    assert lookup(bank, "f-commit").status_code == 200
    replay = post(bank, "f-commit", payment(reference="tr-commit"))
    assert replay.headers["Idempotent-Replayed"] == "true" and bank.count("tr-commit") == 1


def test_slow_settlement_is_pending_for_n_lookups(bank: SandboxBank) -> None:
    bank.inject(FaultKind.SLOW_SETTLEMENT, leg="debit", checks=3)
    created = post(bank, "f-slow", payment(reference="tr-slow"))
    assert created.status_code == 201 and created.json()["status"] == "PENDING"
    assert bank.balance(SOURCE) == Decimal("9750.00")  # accepted: the money is held at once
    statuses = [lookup(bank, "f-slow").json()["status"] for _ in range(4)]
    assert statuses == ["PENDING", "PENDING", "SETTLED", "SETTLED"]


@pytest.mark.parametrize("status", [400, 403, 408, 500])
def test_error_fault_answers_any_status_and_does_nothing(bank: SandboxBank, status: int) -> None:
    posted = post(bank, "f-err", payment(reference="tr-err"))
    assert posted.status_code == 201
    bank.inject(FaultKind.ERROR, leg="lookup", status=status)
    assert lookup(bank, "f-err").status_code == status


@pytest.mark.parametrize("status", [404, 409, 429, 302, 600])
def test_error_fault_refuses_statuses_that_mean_something_else(bank: SandboxBank, status: int) -> None:
    with pytest.raises(ValueError, match="status"):
        bank.inject(FaultKind.ERROR, status=status)


def test_fault_options_are_checked(bank: SandboxBank) -> None:
    with pytest.raises(ValueError, match="leg"):
        bank.inject(FaultKind.ERROR_5XX, leg="debt")
    with pytest.raises(ValueError, match="rate"):
        bank.inject(FaultKind.ERROR_5XX, rate=1.5)
    with pytest.raises(ValueError, match="5xx"):
        bank.inject(FaultKind.ERROR_5XX, status=404)
    with pytest.raises(ValueError):
        bank.inject("meteor")
    with pytest.raises(ValueError, match="leg"):
        bank.requests_seen("debt")  # type: ignore[arg-type]
    assert bank.faults == []


def test_clear_some_faults(bank: SandboxBank) -> None:
    keep = bank.inject(FaultKind.ERROR_5XX, leg="credit")
    drop = bank.inject(FaultKind.ERROR_5XX, leg="debit")
    bank.clear_faults(drop)
    assert bank.faults == [keep]
    bank.clear_faults()
    assert bank.faults == []


# -- cancellation, screening, daily limits -------------------------------------------------------------------


def cancel(bank: SandboxBank, key: str) -> requests.Response:
    return requests.post(f"{bank.url}/v1/cancellations", json={"idempotencyKey": key}, timeout=TIMEOUT)


def test_a_cancelled_key_refuses_a_late_payment(bank: SandboxBank) -> None:
    assert cancel(bank, "tr-c:debit").json() == {"idempotencyKey": "tr-c:debit", "status": "CANCELLED"}
    assert cancel(bank, "tr-c:debit").status_code == 200  # idempotent
    late = post(bank, "tr-c:debit", payment(reference="tr-c"))
    assert (late.status_code, error_code(late)) == (409, "IDEMPOTENCY_KEY_CANCELLED")
    assert bank.ledger == [] and bank.requests_seen("cancel", reference="tr-c") == 2


def test_cancelling_a_key_that_paid_returns_the_payment(bank: SandboxBank) -> None:
    created = post(bank, "tr-p:debit", payment(reference="tr-p")).json()
    refused = cancel(bank, "tr-p:debit")
    assert refused.status_code == 409 and error_code(refused) == "PAYMENT_EXISTS"
    assert refused.json()["payment"] == created
    assert cancel(bank, "").status_code == 400


def test_screening_declines_the_flagged_account(bank: SandboxBank) -> None:
    def screen(account: str, counterparty: str) -> requests.Response:
        body = {"reference": "tr-s", "account": account, "counterparty": counterparty, "amount": "1.00"}
        return requests.post(f"{bank.url}/v1/screenings", json=body, timeout=TIMEOUT)

    assert screen(SOURCE, DESTINATION).json() == {"reference": "tr-s", "decision": "APPROVE"}
    declined = screen(SOURCE, "CHK-00000451").json()
    assert declined["decision"] == "DECLINE" and declined["reason"] == "SANCTIONS_MATCH"
    assert requests.post(f"{bank.url}/v1/screenings", json={}, timeout=TIMEOUT).status_code == 400


def test_daily_limit_and_todays_debits_net_of_refunds(bank: SandboxBank) -> None:
    bank.open_account("CHK-LIMITED", Decimal("500.00"), daily_limit=Decimal("100.00"))
    post(bank, "l-1", payment("debit", "CHK-LIMITED", "70.00"))
    post(bank, "l-2", payment("refund", "CHK-LIMITED", "20.00"))
    account = requests.get(f"{bank.url}/v1/accounts/CHK-LIMITED", timeout=TIMEOUT).json()
    assert (account["dailyLimit"], account["debitedToday"]) == ("100.00", "50.00")
    assert requests.get(f"{bank.url}/v1/accounts/CHK-00000460", timeout=TIMEOUT).json()["dailyLimit"] == "100.00"


def test_the_banks_retry_after_ceiling_is_the_one_the_client_and_the_state_machine_assume() -> None:
    from holdline.dal.bank_api import RETRY_AFTER_CEILING_SECONDS as CLIENT_CEILING

    assert CLIENT_CEILING == RETRY_AFTER_CEILING_SECONDS
