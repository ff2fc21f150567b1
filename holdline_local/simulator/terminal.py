"""A simulated call's timeline for a terminal (``holdline simulate``, ``make demo``)."""

from __future__ import annotations

from holdline_local.simulator.report import Step

_HIDDEN = frozenset({"errorMessage", "greeting", "holdPrompt"})


def _shown(answer: object) -> str:
    if not isinstance(answer, dict):
        return ""
    return " ".join(f"{k}={v}" for k, v in answer.items() if k not in _HIDDEN)


def format_step(step: Step) -> str:
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
    branch = "" if step.branch == "Success" else f"  → Error branch ({step.note})"
    return f"  t={step.at:7.2f}s  ▶ {step.name:<20} {budget}{retries}  {_shown(step.answer)}{branch}"
