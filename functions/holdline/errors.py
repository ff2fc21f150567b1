"""Typed domain errors.

A bank leg raises one of these; Lambda reports the class name as ``errorType`` and Step Functions matches it
in ``Retry``/``Catch`` ``ErrorEquals``, so a class name here is part of the ASL contract: rename both or
neither. ``code`` is what the Connect flow sees in ``errorCode``; ``message`` is short and speakable and
never carries an account number.
"""

from __future__ import annotations


class RequestRejected(Exception):
    """A flow asked for something we will not do: nothing was written or started. ``code`` is for the flow
    to branch on, ``message`` is short and speakable and never repeats an account number."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code = code
        self.message = message


class HoldlineError(Exception):
    code = "INTERNAL_ERROR"
    message = "Something went wrong on our side."
    #: A transient error may succeed if retried (the state machine retries it with backoff and jitter).
    transient = False


class BankError(HoldlineError):
    code = "BANK_ERROR"
    message = "The bank could not complete the request."


# Transient: retried by the state machine.
class BankUnavailable(BankError):
    code = "BANK_UNAVAILABLE"
    message = "The bank is not available right now."
    transient = True


class BankThrottled(BankError):
    code = "BANK_UNAVAILABLE"
    message = "The bank is busy right now."
    transient = True

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        #: The bank's Retry-After, in seconds; the state machine's backoff starts at least this high.
        self.retry_after = retry_after


class BankTimeout(BankError):
    code = "BANK_UNAVAILABLE"
    message = "The bank took too long to answer."
    transient = True


class LegOutOfTime(BankError):
    """A leg stopped before its own Lambda Timeout: too little of its budget (the context's remaining time less a
    reserve) was left for another bank call. Raised instead of being killed, so the task fails with an error
    its Retry names and the attempt's last words are logged; every leg is idempotent, so the retry is safe."""

    code = "BANK_UNAVAILABLE"
    message = "The bank took too long to answer."
    transient = True


class PaymentInFlight(BankError):
    """409 IDEMPOTENCY_KEY_IN_USE: the bank is still processing an earlier request with this key (an attempt
    that gave up may still land). Retried; after the retries the leg's outcome is unknown, so the saga
    compensates (the refund finds the payment or burns its key)."""

    code = "BANK_UNAVAILABLE"
    message = "The bank is still processing the payment."
    transient = True


class TrackerUnavailable(HoldlineError):
    """A leg's own read of the tracker table failed the way AWS calls do (timeout, throttling, 5xx): retried."""

    code = "TECHNICAL_ERROR"
    transient = True


# Business refusals: never retried, they go straight to their outcome.
class InsufficientFunds(BankError):
    code = "INSUFFICIENT_FUNDS"
    message = "There are not enough funds in the source account."


class AccountNotFound(BankError):
    code = "ACCOUNT_NOT_FOUND"
    message = "One of the accounts could not be found."


class AccountFrozen(BankError):
    code = "ACCOUNT_FROZEN"
    message = "One of the accounts cannot be used for transfers."


class BankRejected(BankError):
    """The bank refused the request as malformed: a bug on our side, not worth a retry."""

    code = "BANK_REJECTED"


class RefusedAfterAttempt(BankError):
    """A debit or credit refused on a retry, after an earlier attempt whose outcome was not known (it may still
    land). Unlike the same refusal on a first attempt it cannot end the transfer with "nothing moved": the saga
    compensates (the refund finds the payment, or burns its key so that it cannot land)."""

    code = "BANK_REJECTED"


class UnknownPaymentStatus(BankError):
    """The bank answered a payment with no status, or one the saga does not know. Whether money moved is then
    unknown, so it is neither taken as settled nor as refused: a debit or credit compensates (the refund's
    cancellation finds what landed), and a refund leaves the debit to a person."""

    code = "BANK_REJECTED"


class FraudSuspected(BankError):
    """The fraud screening declined the transfer. The caller hears a plain refusal, never why."""

    code = "BANK_REJECTED"
    message = "The bank declined this transfer."


class DailyLimitExceeded(BankError):
    code = "LIMIT_EXCEEDED"
    message = "This transfer would go over the account's daily limit."


class TransferInvalid(HoldlineError):
    """The request on the tracker row does not hold up (a bug or a tampered row): nothing is moved."""

    code = "TECHNICAL_ERROR"


class RequestTampered(TransferInvalid):
    """The request on the tracker row no longer matches the fingerprint the starter wrote beside it: the row was
    changed after the start. No bank call is made from it (not even a refund, which would pay the account the row
    names now), and a person must look."""


class SettlementTimeout(BankError):
    """A leg the bank accepted stayed PENDING past the saga's bound (named by the state machine's Pass state)."""

    code = "BANK_UNAVAILABLE"
    message = "The bank did not confirm the payment in time."


class PaymentNotFound(BankError):
    """A leg that was accepted cannot be found by its key any more: treat as failed and compensate."""

    code = "BANK_UNAVAILABLE"


class CompensationBlocked(BankError):
    """The credit landed (or cannot be ruled out), so giving the debit back would pay twice: a person must
    reconcile. The state machine records it as REFUND_PENDING."""

    code = "REFUND_PENDING"
    message = "The transfer failed and the refund is still being processed."


class RefundPending(HoldlineError):
    """The refund after a failed leg could not be made within its retries: a person must act."""

    code = "REFUND_PENDING"
    message = "The transfer failed and the refund is still being processed."


class LedgerUnsettled(BankError):
    """The ledger check after a failed refund found a payment the bank still holds PENDING: its outcome is not known
    yet. Transient: the state machine checks again at the settlement pace; past its retries the outcome is
    unconfirmed."""

    code = "OUTCOME_UNCONFIRMED"
    transient = True


class OutcomeUnconfirmed(HoldlineError):
    """What happened at the bank could not be established (the ledger check failed, or found a state no rule
    explains): neither "failed" nor "refund pending" would be the truth. The caller is asked not to repeat the
    transfer, and an agent gets a task with the ledger facts."""

    code = "OUTCOME_UNCONFIRMED"
    message = "We could not confirm your transfer. Please do not repeat it: we will call you back."


class TrackerNotRecorded(HoldlineError):
    """The saga's final tracker write failed past its retries (DynamoDB throttled, or the row no longer RUNNING):
    the execution fails with this error and the outcome it could not write as its cause (JSON), which the
    reconciler and the sweeper write instead of a bare ExecutionFailed."""


class TrackerNotFound(HoldlineError):
    """A bank leg was started for a tracker row that does not exist (claim check broken)."""

    code = "NOT_FOUND"
    message = "We could not find that request."


ERRORS_BY_NAME: dict[str, type[HoldlineError]] = {
    cls.__name__: cls
    for cls in (
        HoldlineError,
        BankError,
        BankUnavailable,
        BankThrottled,
        BankTimeout,
        InsufficientFunds,
        AccountNotFound,
        AccountFrozen,
        BankRejected,
        RefundPending,
        TrackerNotFound,
        FraudSuspected,
        DailyLimitExceeded,
        TransferInvalid,
        SettlementTimeout,
        PaymentNotFound,
        CompensationBlocked,
        LegOutOfTime,
        PaymentInFlight,
        TrackerUnavailable,
        RefusedAfterAttempt,
        UnknownPaymentStatus,
        RequestTampered,
        LedgerUnsettled,
        OutcomeUnconfirmed,
        TrackerNotRecorded,
    )
}

# Errors the Step Functions runtime names itself (task timeouts, Lambda service faults) as the caller hears them.
# A leg stopped at its own Lambda Timeout (Sandbox.Timedout) was waiting on the bank: the caller hears what a
# task timeout sounds like. Lambda.Unknown (an older runtime's timeout, or out of memory) is ours.
TIMEOUT_ERRORS = frozenset({"States.Timeout", "Sandbox.Timedout"})
_STATES_ERROR_CODES = {
    **{name: ("BANK_UNAVAILABLE", BankTimeout.message) for name in TIMEOUT_ERRORS},
    "States.TaskFailed": ("TECHNICAL_ERROR", HoldlineError.message),
    "Lambda.Unknown": ("TECHNICAL_ERROR", HoldlineError.message),
    # Status or the outcome waiter ended a row whose execution could not be started (holdline/logic/tracking.py):
    # the first state never ran, so nothing reached the bank.
    "ExecutionNotStarted": ("EXECUTION_NOT_STARTED", "We could not start your transfer. No money has moved."),
}


def describe_failure(error_name: str | None) -> tuple[str, str]:
    """Map an ASL error name recorded on the tracker to the (errorCode, errorMessage) a flow branches on."""
    if error_name in ERRORS_BY_NAME:
        cls = ERRORS_BY_NAME[error_name]
        return cls.code, cls.message
    if error_name in _STATES_ERROR_CODES:
        return _STATES_ERROR_CODES[error_name]
    return "TECHNICAL_ERROR", HoldlineError.message


# ---- Creating Amazon Connect tasks (the follow-up workflow) ---------------------------------------------
# Named after what went wrong, mapped from Connect's error codes in dal/connect_tasks.py. The transient ones
# are retried by the follow-up state machine with backoff and full jitter; the others fail the follow-up.
class TaskNotCreated(HoldlineError):
    code = "TASK_NOT_CREATED"
    message = "We could not create a follow-up for an agent."


class ConnectThrottled(TaskNotCreated):
    """ThrottlingException: too many API calls."""

    transient = True


class ConnectTaskQuotaExceeded(TaskNotCreated):
    """ServiceQuotaExceededException: the instance has its maximum of concurrent active tasks."""

    transient = True


class ConnectNotReady(TaskNotCreated):
    """ResourceNotReadyException: the instance or flow is still being created."""

    transient = True


class ConnectUnavailable(TaskNotCreated):
    """InternalServiceException or no answer: Connect's side, worth another try."""

    transient = True


class ConnectResourceNotFound(TaskNotCreated):
    """ResourceNotFoundException: a wrong instance or contact flow id. Configuration, not luck."""


class ConnectAccessDenied(TaskNotCreated):
    """AccessDeniedException: the role may not call StartTaskContact on that instance."""


class ConnectRequestInvalid(TaskNotCreated):
    """InvalidRequestException / InvalidParameterException / IdempotencyException: a bug on our side."""


ERRORS_BY_NAME.update(
    {
        cls.__name__: cls
        for cls in (
            TaskNotCreated,
            ConnectThrottled,
            ConnectTaskQuotaExceeded,
            ConnectNotReady,
            ConnectUnavailable,
            ConnectResourceNotFound,
            ConnectAccessDenied,
            ConnectRequestInvalid,
        )
    }
)

# Failures recorded by the reconciler and the sweeper (not raised by a leg): the execution itself ended badly.
EXECUTION_FAILURES = {
    "ExecutionFailed": "EXECUTION_FAILED",
    "ExecutionTimedOut": "EXECUTION_TIMED_OUT",
    "ExecutionAborted": "EXECUTION_ABORTED",
    "ExecutionNotStarted": "EXECUTION_NOT_STARTED",
}


def failure_reason(error_name: str | None) -> tuple[str, bool]:
    """The operator's view of a failure: (reasonCode, retryable). ``retryable`` means a new attempt of the
    same request may succeed (the bank was down, the execution was cut short); a business refusal or a
    refund that needs a person is not."""
    if error_name in EXECUTION_FAILURES:
        return EXECUTION_FAILURES[error_name], error_name != "ExecutionFailed"
    if error_name in ERRORS_BY_NAME:
        cls = ERRORS_BY_NAME[error_name]
        return cls.code, cls.transient
    code, _ = describe_failure(error_name)
    return code, error_name in TIMEOUT_ERRORS
