"""Limits LINE documents outside its OpenAPI spec, as pure checks on a parsed body.

The spec already carries some limits (at most 5 messages, 13 quick-reply
items, 1 to 500 multicast recipients) and :mod:`line_standin._spec` enforces
those. What the spec leaves out, from ``../shared/line-openapi/README.md``:

- text (and textV2) at most 5,000 characters counted in UTF-16 code units,
  so an emoji counts 2 and each Thai character (tone marks included) 1;
- Flex ``altText`` at most 1,500 characters;
- a Flex bubble's JSON at most 30 KB, a carousel's at most 50 KB with at most
  12 bubbles. We count the compact UTF-8 JSON and take 1 KB = 1,000 bytes,
  the stricter reading, so whatever passes here passes at LINE;
- where Flex components may sit, colours and sizes (:mod:`line_standin._flex`).
"""

from __future__ import annotations

import json
from typing import Any

from floodwatch.line_standin._flex import flex_rule_errors
from floodwatch.line_standin._spec import ErrorDetail

MAX_TEXT_UTF16 = 5000
MAX_FLEX_ALT_TEXT = 1500
MAX_BUBBLE_JSON_BYTES = 30_000
MAX_CAROUSEL_JSON_BYTES = 50_000
MAX_CAROUSEL_BUBBLES = 12


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, the way LINE counts characters."""
    return len(text.encode("utf-16-le")) // 2


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def message_limit_errors(messages: Any) -> list[ErrorDetail]:
    """Break-downs of LINE's unwritten limits for a request's ``messages`` array.

    Parameters
    ----------
    messages : list of dict
        The ``messages`` property of a push / multicast / reply / broadcast /
        narrowcast body. Anything else (not a list, items not objects) is left
        to the schema check, which reports it.
    """
    if not isinstance(messages, list):
        return []
    details: list[ErrorDetail] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        where = f"messages[{index}]"
        kind = message.get("type")
        text = message.get("text")
        if kind in ("text", "textV2") and isinstance(text, str):
            if utf16_length(text) > MAX_TEXT_UTF16:
                details.append(
                    ErrorDetail(f"Length must be between 0 and {MAX_TEXT_UTF16}", f"{where}.text")
                )
        if kind == "flex":
            alt_text = message.get("altText")
            if isinstance(alt_text, str) and utf16_length(alt_text) > MAX_FLEX_ALT_TEXT:
                details.append(
                    ErrorDetail(f"Length must be between 0 and {MAX_FLEX_ALT_TEXT}", f"{where}.altText")
                )
            details.extend(_flex_size_errors(message.get("contents"), f"{where}.contents"))
            details.extend(flex_rule_errors(message.get("contents"), f"{where}.contents"))
    return details


def _flex_size_errors(contents: Any, where: str) -> list[ErrorDetail]:
    if not isinstance(contents, dict):
        return []
    if contents.get("type") == "bubble":
        size = _json_bytes(contents)
        if size > MAX_BUBBLE_JSON_BYTES:
            return [ErrorDetail(f"bubble JSON is {size} bytes; must be at most 30 KB", where)]
        return []
    if contents.get("type") == "carousel":
        details: list[ErrorDetail] = []
        bubbles = contents.get("contents")
        if isinstance(bubbles, list):
            if len(bubbles) > MAX_CAROUSEL_BUBBLES:
                details.append(
                    ErrorDetail(f"Size must be between 1 and {MAX_CAROUSEL_BUBBLES}", f"{where}.contents")
                )
            for index, bubble in enumerate(bubbles):
                details.extend(_flex_size_errors(bubble, f"{where}.contents[{index}]"))
        size = _json_bytes(contents)
        if size > MAX_CAROUSEL_JSON_BYTES:
            details.append(ErrorDetail(f"carousel JSON is {size} bytes; must be at most 50 KB", where))
        return details
    return []
