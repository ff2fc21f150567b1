"""The ledger's verdict after a refund that did not complete (holdline/models/ledger.py): every combination of
leg states, against the rule each verdict states, and the state machine's Choice tied to the verdicts."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from holdline.models.ledger import NO_MONEY, LedgerVerdict, verdict_of
from holdline.models.unrecorded import UnrecordedOutcome

STATES = ("NONE", "SETTLED", "CANCELLED", "FAILED", "REJECTED", "REVERSED", "UNKNOWN")
REPO = Path(__file__).resolve().parents[2]


def _expected(debit: str, credit: str, refund: str) -> LedgerVerdict:
    holds = {leg: state == "SETTLED" for leg, state in (("debit", debit), ("credit", credit), ("refund", refund))}
    unknown = "UNKNOWN" in (debit, credit, refund)
    if unknown:
        return LedgerVerdict.INCONSISTENT
    match (holds["debit"], holds["credit"], holds["refund"]):
        case (True, True, False):
            return LedgerVerdict.TRANSFER_COMPLETE
        case (True, False, True):
            return LedgerVerdict.REFUNDED
        case (True, False, False):
            return LedgerVerdict.DEBIT_KEPT
        case (False, False, False):
            return LedgerVerdict.NOTHING_MOVED
    return LedgerVerdict.INCONSISTENT


@pytest.mark.parametrize(("debit", "credit", "refund"), list(itertools.product(STATES, repeat=3)))
def test_every_ledger_has_the_verdict_its_rule_states(debit: str, credit: str, refund: str) -> None:
    assert verdict_of(debit, credit, refund) is _expected(debit, credit, refund)


def test_refund_pending_only_for_a_debit_kept_alone() -> None:
    """The one REFUND_PENDING: the debit settled, no credit, no refund. A landed credit is never a pending refund,
    and a ledger with no debit is never one."""
    kept = [combo for combo in itertools.product(STATES, repeat=3) if verdict_of(*combo) is LedgerVerdict.DEBIT_KEPT]
    assert kept and all(d == "SETTLED" and c in NO_MONEY and r in NO_MONEY for d, c, r in kept)


def test_the_state_machine_acts_on_every_verdict() -> None:
    """LedgerSays names every verdict but INCONSISTENT, which is its Default (OUTCOME_UNCONFIRMED)."""
    states = json.loads((REPO / "statemachines" / "transfer.asl.json").read_text())["States"]
    choice = states["LedgerSays"]
    named = {rule["StringEquals"]: rule["Next"] for rule in choice["Choices"]}
    assert set(named) == {v.value for v in LedgerVerdict} - {LedgerVerdict.INCONSISTENT.value}
    assert choice["Default"] == "RecordOutcomeUnconfirmed"
    assert named["DEBIT_KEPT"] == "RecordRefundPending" and named["TRANSFER_COMPLETE"] == "UseLedgerLegs"


def test_every_unrecorded_outcome_of_the_state_machine_parses() -> None:
    """Each *NotRecorded Pass builds an outcome the reconciler accepts (paths filled in with sample values)."""
    states = json.loads((REPO / "statemachines" / "transfer.asl.json").read_text())["States"]
    samples = {
        "$.trackerId": "transfer-1",
        "$.confirmation.confirmationNumber": "HL0000000001",
        "$.failure.Error": "BankUnavailable",
        "$.refund.refunded": True,
    }
    passes = {name: s for name, s in states.items() if name.endswith("NotRecorded") and s["Type"] == "Pass"}
    assert len(passes) == 5
    for name, state in passes.items():
        outcome = {
            key.removesuffix(".$"): samples[value] if key.endswith(".$") else value
            for key, value in state["Parameters"].items()
        }
        parsed = UnrecordedOutcome.model_validate_json(json.dumps(outcome))
        assert parsed.tracker_id == "transfer-1" and state["Next"] == "TrackerNotRecorded", name


def test_a_cause_that_is_not_an_outcome_is_refused() -> None:
    with pytest.raises(ValueError):
        UnrecordedOutcome.model_validate_json('{"trackerId": "t", "status": "MAYBE"}')
    with pytest.raises(ValueError):
        UnrecordedOutcome.model_validate_json('{"trackerId": "t", "status": "FAILED", "extra": 1}')
