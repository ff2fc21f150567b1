"""What the bank's ledger makes a transfer whose refund did not complete: the rules the saga's CheckLedger state
acts on (statemachines/transfer.asl.json, the Choice ``LedgerSays``), in one place so they are tested alone.

Each leg's state is what the bank holds under the leg's key once the key was cancelled: ``NONE`` (no payment, and
no request still in flight can add one), ``SETTLED``, ``PENDING`` (the check is made again before any verdict), a
status of a payment that moved no money (``CANCELLED``, ``FAILED``, ``REJECTED``, ``REVERSED``), or ``UNKNOWN``.
"""

from __future__ import annotations

from enum import StrEnum

#: Leg states that hold no money: no payment under the key, or a payment that moved none.
NO_MONEY = frozenset({"NONE", "CANCELLED", "FAILED", "REJECTED", "REVERSED"})


class LedgerVerdict(StrEnum):
    #: Debit and credit settled, no refund: the transfer happened. The caller hears SUCCEEDED.
    TRANSFER_COMPLETE = "TRANSFER_COMPLETE"
    #: Debit and refund settled, no credit: the money is back. FAILED, refunded.
    REFUNDED = "REFUNDED"
    #: Debit settled, no credit, no refund: the money is with the bank, not given back. The one case of
    #: REFUND_PENDING (a person gives it back).
    DEBIT_KEPT = "DEBIT_KEPT"
    #: No leg holds money: FAILED, nothing was taken (refunded=false).
    NOTHING_MOVED = "NOTHING_MOVED"
    #: Anything else (a credit without a settled debit, a refund beside a credit, a status on neither list): no
    #: rule makes it a known outcome. OUTCOME_UNCONFIRMED, and a person looks.
    INCONSISTENT = "INCONSISTENT"


def verdict_of(debit: str, credit: str, refund: str) -> LedgerVerdict:
    """The verdict for three settled leg states (none PENDING)."""
    if debit == "SETTLED" and credit == "SETTLED" and refund in NO_MONEY:
        return LedgerVerdict.TRANSFER_COMPLETE
    if debit == "SETTLED" and credit in NO_MONEY and refund == "SETTLED":
        return LedgerVerdict.REFUNDED
    if debit == "SETTLED" and credit in NO_MONEY and refund in NO_MONEY:
        return LedgerVerdict.DEBIT_KEPT
    if debit in NO_MONEY and credit in NO_MONEY and refund in NO_MONEY:
        return LedgerVerdict.NOTHING_MOVED
    return LedgerVerdict.INCONSISTENT
