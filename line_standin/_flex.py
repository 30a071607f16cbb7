"""Flex Message rules LINE enforces that its OpenAPI file leaves as free strings or loose unions.

The spec (checked by :mod:`line_standin._spec`) gives every Flex component's
properties and types, and dispatches on ``type``. It does not say which
components may sit where, nor what the string-valued sizes and colours may
be. LINE's Flex Message reference does, and LINE answers 400 for these:

- where components may sit: ``icon`` only in a ``baseline`` box, and a
  baseline box holds only ``icon``, ``text`` and ``filler``; ``span`` only in
  a text's ``contents``; ``video`` only as a bubble's ``hero``; the hero is
  a ``box``, ``image`` or ``video``;
- a ``text`` has ``text`` or ``contents``;
- colours are ``#RRGGBB`` or ``#RRGGBBAA``;
- sizes, spacings, margins, paddings, offsets, widths and heights are one of
  the documented keywords or a ``px`` (some also ``%``) value;
- ``flex`` and ``maxLines`` are 0 or more.

The details use our own words (LINE's wording for these is not published),
with LINE's ``property`` paths.
"""

from __future__ import annotations

import re
from typing import Any

from floodwatch.line_standin._spec import ErrorDetail

_HEX = re.compile(r"^#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?$")
_PX = re.compile(r"^\d+(\.\d+)?px$")
_PCT = re.compile(r"^\d+(\.\d+)?%$")

_STEPS = ("none", "xs", "sm", "md", "lg", "xl", "xxl")
_TEXT_SIZES = ("xxs", "xs", "sm", "md", "lg", "xl", "xxl", "3xl", "4xl", "5xl")
_IMAGE_SIZES = _TEXT_SIZES + ("full",)
_BORDER_WIDTHS = ("none", "light", "normal", "medium", "semi-bold", "bold")

COLOUR_KEYS = ("color", "backgroundColor", "borderColor", "separatorColor", "startColor", "endColor", "centerColor")
# property -> (keywords allowed, px allowed, % allowed), per component type ("*": every type)
_LENGTHS: dict[str, dict[str, tuple[tuple[str, ...], bool, bool]]] = {
    "*": {
        "margin": (_STEPS, True, False),
        "offsetTop": (_STEPS, True, True), "offsetBottom": (_STEPS, True, True),
        "offsetStart": (_STEPS, True, True), "offsetEnd": (_STEPS, True, True),
    },
    "box": {
        "spacing": (_STEPS, True, False),
        "paddingAll": (_STEPS, True, True), "paddingTop": (_STEPS, True, True),
        "paddingBottom": (_STEPS, True, True), "paddingStart": (_STEPS, True, True),
        "paddingEnd": (_STEPS, True, True),
        "width": ((), True, True), "maxWidth": ((), True, True),
        "height": ((), True, True), "maxHeight": ((), True, True),
        "cornerRadius": (_STEPS, True, False), "borderWidth": (_BORDER_WIDTHS, True, False),
    },
    "text": {"size": (_TEXT_SIZES, True, False), "lineSpacing": ((), True, False)},
    "span": {"size": (_TEXT_SIZES, True, False)},
    "icon": {"size": (_TEXT_SIZES, True, False)},
    "image": {"size": (_IMAGE_SIZES, True, True)},
}

_BASELINE_CHILDREN = ("icon", "text", "filler")


def _length_ok(value: Any, rule: tuple[tuple[str, ...], bool, bool]) -> bool:
    keywords, px, pct = rule
    if not isinstance(value, str):
        return True  # the spec check reports a wrong type
    return value in keywords or (px and bool(_PX.match(value))) or (pct and bool(_PCT.match(value)))


def _describe(rule: tuple[tuple[str, ...], bool, bool]) -> str:
    keywords, px, pct = rule
    forms = list(keywords) + (["a px value like 12px"] if px else []) + (["a % value like 50%"] if pct else [])
    return "must be " + ", ".join(forms[:-1]) + (" or " if len(forms) > 1 else "") + forms[-1]


def _component_errors(component: Any, where: str, parent: str) -> list[ErrorDetail]:
    """Rules for one component and everything under it; ``parent``: box layout, 'text', 'hero', 'button'."""
    if not isinstance(component, dict):
        return []
    kind = component.get("type")
    details: list[ErrorDetail] = []
    if kind == "icon" and parent != "baseline":
        details.append(ErrorDetail("an icon may only be placed in a baseline box", f"{where}.type"))
    elif kind == "span" and parent != "text":
        details.append(ErrorDetail("a span may only be placed in a text's contents", f"{where}.type"))
    elif kind == "video" and parent != "hero":
        details.append(ErrorDetail("a video may only be a bubble's hero", f"{where}.type"))
    elif parent == "baseline" and kind not in _BASELINE_CHILDREN:
        details.append(ErrorDetail(f"a baseline box may hold only {', '.join(_BASELINE_CHILDREN)}",
                                   f"{where}.type"))
    if kind == "text" and "text" not in component and not component.get("contents"):
        details.append(ErrorDetail("must be specified (or give contents)", f"{where}.text"))
    for key in COLOUR_KEYS:
        value = component.get(key)
        if isinstance(value, str) and not _HEX.match(value):
            details.append(ErrorDetail("must be a hex colour #RRGGBB or #RRGGBBAA", f"{where}.{key}"))
    rules = {**_LENGTHS["*"], **_LENGTHS.get(str(kind), {})}
    for key, rule in rules.items():
        if key in component and not _length_ok(component[key], rule):
            details.append(ErrorDetail(_describe(rule), f"{where}.{key}"))
    for key in ("flex", "maxLines"):
        value = component.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            details.append(ErrorDetail("must be 0 or more", f"{where}.{key}"))
    background = component.get("background")
    if isinstance(background, dict):
        for key in COLOUR_KEYS:
            value = background.get(key)
            if isinstance(value, str) and not _HEX.match(value):
                details.append(ErrorDetail("must be a hex colour #RRGGBB or #RRGGBBAA", f"{where}.background.{key}"))
    children = component.get("contents")
    if isinstance(children, list):
        child_parent = "text" if kind == "text" else str(component.get("layout", "vertical"))
        for index, child in enumerate(children):
            details.extend(_component_errors(child, f"{where}.contents[{index}]", child_parent))
    return details


def _bubble_errors(bubble: Any, where: str) -> list[ErrorDetail]:
    if not isinstance(bubble, dict):
        return []
    details: list[ErrorDetail] = []
    hero = bubble.get("hero")
    if isinstance(hero, dict):
        if hero.get("type") not in ("box", "image", "video"):
            details.append(ErrorDetail("the hero must be a box, an image or a video", f"{where}.hero.type"))
        details.extend(_component_errors(hero, f"{where}.hero", "hero"))
    for block in ("header", "body", "footer"):
        details.extend(_component_errors(bubble.get(block), f"{where}.{block}", "block"))
    styles = bubble.get("styles")
    if isinstance(styles, dict):
        for block, style in styles.items():
            if not isinstance(style, dict):
                continue
            for key in ("backgroundColor", "separatorColor"):
                value = style.get(key)
                if isinstance(value, str) and not _HEX.match(value):
                    details.append(ErrorDetail("must be a hex colour #RRGGBB or #RRGGBBAA",
                                               f"{where}.styles.{block}.{key}"))
    return details


def flex_rule_errors(contents: Any, where: str) -> list[ErrorDetail]:
    """Rules for a Flex message's ``contents`` (a bubble or a carousel) at ``where``."""
    if not isinstance(contents, dict):
        return []
    if contents.get("type") == "bubble":
        return _bubble_errors(contents, where)
    if contents.get("type") == "carousel" and isinstance(contents.get("contents"), list):
        details: list[ErrorDetail] = []
        for index, bubble in enumerate(contents["contents"]):
            details.extend(_bubble_errors(bubble, f"{where}.contents[{index}]"))
        return details
    return []
