"""The flow's opening lookup: which language and which greeting a dialed number gets.

The flow speaks these values (in text and in SSML), so anything that is not plain, short text is dropped
for the default rather than passed on: an item edited by hand must never break a prompt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from holdline.dal import config_table
from holdline.observability import logger, mask

DEFAULT_KEY = "default"
DEFAULTS: dict[str, str] = {
    "language": "en-US",
    "lineOfBusiness": "",
    "greeting": "Thank you for calling.",
    "holdPrompt": "Your transfer is in progress. Please stay on the line.",
}
LANGUAGE = re.compile(r"^[a-z]{2}-[A-Z]{2}$")
# Letters (any script), digits, spaces and sentence punctuation: safe inside SSML and short enough to speak.
SPEAKABLE = re.compile("^[\\w .,!?'\u2019-]{1,200}$")
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def _speakable(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and SPEAKABLE.match(value.strip()) else None


def lookup(dialed_number: object, overrides: Mapping[str, Any] | None = None) -> dict[str, object]:
    """The configuration for a dialed number: its own item, else the ``default`` item, else built-in defaults.

    Always answers (``found`` says whether an item matched); the flow's Error branch is for the cases this
    function cannot reach (timeout, throttling).
    """
    keys = [dialed_number] if isinstance(dialed_number, str) and E164.match(dialed_number) else []
    item: dict[str, Any] | None = None
    matched = ""
    for key in [*keys, DEFAULT_KEY]:
        item = config_table.get(key)
        if item is not None:
            matched = key
            break
    answer: dict[str, object] = dict(DEFAULTS)
    if item:
        language = item.get("language")
        if isinstance(language, str) and LANGUAGE.match(language):
            answer["language"] = language
        line = _speakable(item.get("lineOfBusiness"))
        if line:
            answer["lineOfBusiness"] = line
            answer["greeting"] = f"Thank you for calling {line}."
        for name in ("greeting", "holdPrompt"):
            text = _speakable(item.get(name))
            if text:
                answer[name] = text
    logger.info(
        "line configuration",
        extra={"dialedNumber": mask(dialed_number if isinstance(dialed_number, str) else ""), "matched": matched},
    )
    answer["found"] = bool(matched)
    answer["configKey"] = DEFAULT_KEY if matched == DEFAULT_KEY else ("dialed" if matched else "")
    return answer
