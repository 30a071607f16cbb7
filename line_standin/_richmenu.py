"""Rich menus and user content as LINE keeps them: pure state and checks, no sockets.

What the spec says about a rich menu is checked by :mod:`line_standin._spec`
(``RichMenuRequest``: ``name`` at most 300 characters, ``chatBarText`` at
most 14, each area's bounds non-negative). What LINE documents beside the
spec (``../shared/line-openapi/README.md``) is checked here:

- ``size``, ``selected``, ``name``, ``chatBarText`` and ``areas`` are required;
- the menu is 800 to 2,500 px wide, at least 250 px high, and at least 1.45
  times as wide as high; at most 20 areas, each inside the menu;
- the image is JPEG or PNG, at most 1 MB, exactly the menu's size in pixels,
  uploaded once (it cannot be replaced: make a new menu);
- a menu without an image cannot be the default; a channel holds at most
  1,000 menus.

The image's pixel size is read from its header (PNG ``IHDR``, JPEG ``SOFn``),
so the stand-in needs no imaging library.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

from floodwatch.line_standin._spec import ErrorDetail

MIN_WIDTH_PX, MAX_WIDTH_PX, MIN_HEIGHT_PX = 800, 2500, 250
MIN_ASPECT = 1.45
MAX_AREAS = 20
MAX_IMAGE_BYTES = 1_000_000  # "1 MB"; we take the stricter reading, as for Flex sizes
MAX_MENUS = 1000
IMAGE_TYPES = ("image/jpeg", "image/png")
REQUIRED = ("size", "selected", "name", "chatBarText", "areas")

MSG_IMAGE_EXISTS = "An image has already been uploaded to the richmenu"
MSG_NO_IMAGE = "must upload richmenu image before applying it to user"


def new_rich_menu_id() -> str:
    return "richmenu-" + secrets.token_hex(16)


def image_size(data: bytes) -> tuple[str, int, int] | None:
    """(``image/png`` or ``image/jpeg``, width px, height px) from the file's header, or None.

    Parameters
    ----------
    data : bytes
        The whole file (a JPEG's size marker can sit after its metadata).
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return "image/png", width, height
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        # SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return "image/jpeg", width, height
        i += 2 + length
    return None


def menu_errors(body: Any) -> list[ErrorDetail]:
    """LINE's documented rich-menu rules that its OpenAPI file leaves out (see the module doc)."""
    if not isinstance(body, dict):
        return []
    details = [ErrorDetail("must be specified", name) for name in REQUIRED if name not in body]
    size = body.get("size")
    width = height = None
    if isinstance(size, dict):
        width, height = size.get("width"), size.get("height")
        if isinstance(width, int) and not MIN_WIDTH_PX <= width <= MAX_WIDTH_PX:
            details.append(ErrorDetail(f"must be between {MIN_WIDTH_PX} and {MAX_WIDTH_PX}", "size.width"))
        if isinstance(height, int) and height < MIN_HEIGHT_PX:
            details.append(ErrorDetail(f"must be at least {MIN_HEIGHT_PX}", "size.height"))
        if isinstance(width, int) and isinstance(height, int) and height > 0 and width / height < MIN_ASPECT:
            details.append(ErrorDetail(f"width/height must be at least {MIN_ASPECT}", "size"))
    areas = body.get("areas")
    if isinstance(areas, list):
        if len(areas) > MAX_AREAS:
            details.append(ErrorDetail(f"Size must be between 0 and {MAX_AREAS}", "areas"))
        for index, area in enumerate(areas):
            bounds = area.get("bounds") if isinstance(area, dict) else None
            if not isinstance(bounds, dict):
                details.append(ErrorDetail("must be specified", f"areas[{index}].bounds"))
                continue
            if not isinstance(area.get("action"), dict):
                details.append(ErrorDetail("must be specified", f"areas[{index}].action"))
            x, y, w, h = (bounds.get(k) for k in ("x", "y", "width", "height"))
            if not all(isinstance(v, int) for v in (x, y, w, h)):
                continue  # the spec check reports the types
            if isinstance(width, int) and isinstance(height, int) and (x + w > width or y + h > height):
                details.append(ErrorDetail("The area is out of the rich menu's size", f"areas[{index}].bounds"))
    return details


@dataclass
class RichMenu:
    rich_menu_id: str
    body: dict[str, Any]
    image: bytes | None = None
    image_type: str | None = None

    def response(self) -> dict[str, Any]:
        """The RichMenuResponse LINE answers (the request's fields plus the id)."""
        keys = ("size", "selected", "name", "chatBarText", "areas")
        return {"richMenuId": self.rich_menu_id, **{k: self.body[k] for k in keys}}


@dataclass
class Content:
    """Something a user sent (image, video, audio), as the content endpoint serves it."""

    data: bytes
    content_type: str


@dataclass
class RichMenuState:
    """A channel's rich menus, its default menu, and user content; not thread-safe (the server locks)."""

    menus: dict[str, RichMenu] = field(default_factory=dict)
    default_id: str | None = None
    contents: dict[str, Content] = field(default_factory=dict)

    def create(self, body: dict[str, Any]) -> RichMenu | None:
        """A new menu, or None when the channel already holds :data:`MAX_MENUS`."""
        if len(self.menus) >= MAX_MENUS:
            return None
        menu = RichMenu(new_rich_menu_id(), body)
        self.menus[menu.rich_menu_id] = menu
        return menu

    def delete(self, rich_menu_id: str) -> bool:
        if self.menus.pop(rich_menu_id, None) is None:
            return False
        if self.default_id == rich_menu_id:
            self.default_id = None
        return True

    def upload_errors(self, menu: RichMenu, content_type: str, data: bytes) -> tuple[int, str] | None:
        """(status, message) refusing an image upload, or None when it may be attached."""
        declared = content_type.split(";")[0].strip().lower()
        if declared not in IMAGE_TYPES:
            return 415, f"Content-Type must be image/jpeg or image/png, got {declared or 'none'!r}"
        if menu.image is not None:
            return 400, MSG_IMAGE_EXISTS
        if len(data) > MAX_IMAGE_BYTES:
            return 400, f"The image is {len(data):,} bytes; it must be at most 1 MB"
        found = image_size(data)
        if found is None or found[0] != declared:
            return 400, f"The body is not a valid {declared.split('/')[1].upper()} image"
        _, width, height = found
        size = menu.body["size"]
        if (width, height) != (size["width"], size["height"]):
            return 400, (f"The image is {width}x{height} px; it must be the rich menu's size "
                         f"{size['width']}x{size['height']} px")
        return None
