"""A simulated call's timeline for a terminal (``holdline simulate``, ``make demo``).

Two clocks: ``t`` is the caller's (hold prompts count in full, however fast they are played), ``real`` is this
machine's, the one the saga runs on and an answer's ``elapsedSeconds`` counts. At time scale 1 they agree."""

from __future__ import annotations

from holdline_local.simulator.report import Step

_HIDDEN = frozenset({"errorMessage", "greeting", "holdPrompt"})


def _shown(answer: object) -> str:
    if not isinstance(answer, dict):
        return ""
    return " ".join(f"{k}={v}" for k, v in answer.items() if k not in _HIDDEN)


LEGEND = (
    "  t = the caller's clock (prompts count in full); real = this machine's clock, which the saga and an "
    "answer's elapsedSeconds run on; ms = how long a function ran"
)


def _clocks(step: Step) -> str:
    return f"  t={step.at:7.2f}s real={step.real_at or 0.0:6.2f}s"


def format_step(step: Step) -> str:
    return _clocks(step) + _body(step).removeprefix(f"  t={step.at:7.2f}s")


def _body(step: Step) -> str:
    if step.kind == "prompt":
        cut = f"  ({step.note})" if step.note else ""
        return f"  t={step.at:7.2f}s  ♪ {step.action:<20} {step.duration_ms / 1000:4.1f}s  “{step.name}”{cut}"
    if step.kind == "wait":
        note = f"  ({step.note})" if step.note else ""
        return f"  t={step.at:7.2f}s  ◆ {step.action:<20} {step.duration_ms / 1000:4.1f}s  → {step.name}{note}"
    if step.kind == "load":
        ran = f"ran {step.duration_ms:7.1f} ms of {step.limit_ms:.0f} ms"
        branch = "" if step.branch == "Success" else f"  → Error branch ({step.note})"
        return f"  t={step.at:7.2f}s  ▼ {step.name:<20} {ran}  {_shown(step.answer)}{branch}"
    if step.branch == "Started":
        return f"  t={step.at:7.2f}s  ▷ {step.name:<20} asynchronous, {step.limit_ms:.0f} ms at most"
    budget = f"{step.duration_ms:7.1f} ms of {step.limit_ms:.0f} ms"
    retries = f" ({step.attempts} attempts)" if step.attempts > 1 else ""
    if step.init_ms is not None:
        retries += f" (cold start: Init {step.init_ms:.0f} ms)"
    branch = "" if step.branch == "Success" else f"  → Error branch ({step.note})"
    return f"  t={step.at:7.2f}s  ▶ {step.name:<20} {budget}{retries}  {_shown(step.answer)}{branch}"
