"""The LINE rich menu: five buttons under the chat, drawn here in Thai, set up through the Messaging API.

:func:`draw_menu` paints the image with Pillow and the TLWG Thai fonts
(Debian's ``fonts-thai-tlwg``), shaping Thai with raqm/HarfBuzz so tone marks
and vowels sit where they belong. :func:`setup_rich_menu` makes it the
channel's default menu: create the menu, upload its image (on LINE's data
API), set it as default. It is safe to run again: the menu's name carries a
digest of its buttons and image, so an unchanged menu is reused, a changed
one replaces the old, and menus an earlier run left without an image are
deleted: floodwatch's menus never pile up. Menus floodwatch did not make are
never touched.

LINE's limits (``../shared/line-openapi/README.md``): 800-2,500 px wide, at
least 250 px high, width/height at least 1.45, at most 1 MB, JPEG or PNG;
``chatBarText`` at most 14 characters, at most 20 areas.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from floodwatch.errors import ConfigError, LineApiError

log = logging.getLogger("floodwatch.alerts.richmenu")

WIDTH_PX, HEIGHT_PX = 2500, 1686
MAX_IMAGE_BYTES = 1_000_000
NAME_PREFIX = "floodwatch:"
CHAT_BAR_TEXT = "เมนู · Menu"
FONT_DIRS = (Path("/usr/share/fonts/truetype/tlwg"), Path("/usr/share/fonts/opentype/tlwg"),
             Path("/usr/local/share/fonts"))
FONT_FILES = ("Loma-Bold.ttf", "Loma-Bold.otf", "Waree-Bold.ttf", "Garuda-Bold.ttf")
FONT_FILES_REGULAR = ("Loma.ttf", "Loma.otf", "Waree.ttf", "Garuda.ttf")


@dataclass(frozen=True, slots=True)
class Button:
    key: str              # the postback's action=...
    label_th: str
    label_en: str
    display_text: str     # what the chat shows the resident tapped
    colour: str           # tile colour
    icon: str             # gauge | tide | report | zone | prepare
    box: tuple[int, int, int, int]  # x, y, width, height in px


# Top row: the three things residents reach for in a flood; bottom row: settings and advice.
BUTTONS = (
    Button("menu_status", "ระดับน้ำตอนนี้", "Water now (my village)", "ระดับน้ำตอนนี้", "#0D47A1", "gauge",
           (0, 0, 834, 843)),
    Button("menu_tide", "น้ำขึ้นลง · แนวโน้ม", "Tide and outlook", "น้ำขึ้นลงและแนวโน้ม", "#00695C", "tide",
           (834, 0, 833, 843)),
    Button("report", "แจ้งน้ำท่วม", "Report flooding", "แจ้งน้ำท่วม", "#C62828", "report",
           (1667, 0, 833, 843)),
    Button("menu_zone", "หมู่บ้าน · ภาษา", "My village and language", "หมู่บ้านและภาษา", "#4527A0", "zone",
           (0, 843, 1250, 843)),
    Button("menu_prepare", "ควรทำอย่างไร", "What to do (be prepared)", "ควรทำอย่างไร", "#E65100", "prepare",
           (1250, 843, 1250, 843)),
)


def menu_areas() -> list[dict[str, Any]]:
    """The tappable areas, one postback each (the webhook's alerts/residents.py answers them)."""
    return [{"bounds": {"x": b.box[0], "y": b.box[1], "width": b.box[2], "height": b.box[3]},
             "action": {"type": "postback", "label": b.label_en[:20], "data": f"action={b.key}",
                        "displayText": b.display_text}} for b in BUTTONS]


def find_font(bold: bool = True) -> Path:
    """A TLWG Thai font file.

    Raises
    ------
    ConfigError
        When none is installed, with the fix.
    """
    for folder in FONT_DIRS:
        for name in FONT_FILES if bold else FONT_FILES_REGULAR:
            if (folder / name).is_file():
                return folder / name
    raise ConfigError("no Thai font found for the rich menu image; install Debian's fonts-thai-tlwg "
                      "(sudo apt-get install fonts-thai-tlwg, or scripts/setup --test)")


def _font(path: Path, size: int):  # noqa: ANN202 - PIL.ImageFont.FreeTypeFont
    from PIL import ImageFont, features

    # raqm (HarfBuzz) places Thai tone marks above upper vowels (น้ำ, ที่); without it they collide
    engine = ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC
    return ImageFont.truetype(str(path), size, layout_engine=engine)


def _icon(draw: Any, kind: str, cx: float, cy: float, r: float) -> None:
    """A simple white pictogram of ``kind`` centred on (cx, cy), about 2r across."""
    white, w = "#FFFFFF", max(6, int(r / 7))
    if kind == "gauge":  # a staff gauge with water waves across it
        draw.rounded_rectangle((cx - r * 0.22, cy - r, cx + r * 0.22, cy + r * 0.55), radius=r * 0.08,
                               outline=white, width=w)
        for k in range(5):
            y = cy - r * 0.8 + k * r * 0.3
            draw.line((cx - r * 0.22, y, cx - r * 0.02, y), fill=white, width=w // 2 + 2)
        _waves(draw, cx, cy + r * 0.45, r, white, w)
        _waves(draw, cx, cy + r * 0.8, r, white, w)
    elif kind == "tide":  # a tide curve with an up and a down arrow
        points = [(cx - r + 2 * r * i / 60, cy + r * 0.35 * math.sin(2 * math.pi * i / 60 * 1.5)) for i in range(61)]
        draw.line(points, fill=white, width=w, joint="curve")
        for x, up in ((cx - r * 0.55, True), (cx + r * 0.55, False)):
            y0, y1 = (cy - r * 0.45, cy - r * 0.95) if up else (cy + r * 0.45, cy + r * 0.95)
            draw.line((x, y0, x, y1), fill=white, width=w)
            tip = -1 if up else 1
            draw.polygon([(x - r * 0.14, y1 - tip * r * 0.12), (x + r * 0.14, y1 - tip * r * 0.12),
                          (x, y1 + tip * r * 0.08)], fill=white)
    elif kind == "report":  # a map pin over water
        draw.ellipse((cx - r * 0.5, cy - r, cx + r * 0.5, cy), outline=white, width=w)
        draw.polygon([(cx - r * 0.42, cy - r * 0.25), (cx + r * 0.42, cy - r * 0.25), (cx, cy + r * 0.45)],
                     fill=white)
        draw.ellipse((cx - r * 0.17, cy - r * 0.67, cx + r * 0.17, cy - r * 0.33), fill=white)
        _waves(draw, cx, cy + r * 0.75, r, white, w)
    elif kind == "zone":  # a house
        draw.polygon([(cx - r, cy - r * 0.1), (cx, cy - r), (cx + r, cy - r * 0.1)], outline=white, width=w)
        draw.rectangle((cx - r * 0.7, cy - r * 0.1, cx + r * 0.7, cy + r * 0.85), outline=white, width=w)
        draw.rectangle((cx - r * 0.18, cy + r * 0.3, cx + r * 0.18, cy + r * 0.85), fill=white)
    else:  # prepare: a checklist
        draw.rounded_rectangle((cx - r * 0.75, cy - r, cx + r * 0.75, cy + r), radius=r * 0.12, outline=white,
                               width=w)
        for k in range(3):
            y = cy - r * 0.5 + k * r * 0.5
            draw.line([(cx - r * 0.5, y), (cx - r * 0.35, y + r * 0.15), (cx - r * 0.1, y - r * 0.15)],
                      fill=white, width=w)
            draw.line((cx + r * 0.05, y, cx + r * 0.55, y), fill=white, width=w)


def _waves(draw: Any, cx: float, cy: float, r: float, colour: str, w: int) -> None:
    points = [(cx - r + 2 * r * i / 40, cy + r * 0.08 * math.sin(2 * math.pi * i / 40 * 3)) for i in range(41)]
    draw.line(points, fill=colour, width=w, joint="curve")


def draw_menu(font_path: Path | None = None) -> bytes:
    """The menu image: PNG, 2,500 x 1,686 px, each button a coloured tile with an icon, Thai and English.

    Returns PNG bytes (JPEG if a PNG would exceed LINE's 1 MB, which it does not with these flat colours).
    """
    from PIL import Image, ImageDraw

    bold = font_path or find_font(bold=True)
    try:
        regular = find_font(bold=False) if font_path is None else font_path
    except ConfigError:
        regular = bold
    image = Image.new("RGB", (WIDTH_PX, HEIGHT_PX), "#ECEFF1")
    draw = ImageDraw.Draw(image)
    gap = 14
    for b in BUTTONS:
        x, y, w, h = b.box
        draw.rounded_rectangle((x + gap, y + gap, x + w - gap, y + h - gap), radius=48, fill=b.colour)
        cx = x + w / 2
        _icon(draw, b.icon, cx, y + h * 0.34, min(w, h) * 0.2)
        th_size = 112 if w < 1000 else 124
        th_font, en_font = _font(bold, th_size), _font(regular, 58)
        # shrink the Thai label until it fits the tile, with a margin
        while draw.textlength(b.label_th, font=th_font) > w - 2 * gap - 80 and th_size > 60:
            th_size -= 4
            th_font = _font(bold, th_size)
        draw.text((cx, y + h * 0.70), b.label_th, font=th_font, fill="#FFFFFF", anchor="mm")
        draw.text((cx, y + h * 0.85), b.label_en, font=en_font, fill="#FFFFFFDD", anchor="mm")
    out = io.BytesIO()
    image.save(out, "PNG")  # flat colours: about 150 KB; optimize=True saves 3 % for twice the time
    data = out.getvalue()
    quality = 90
    while len(data) > MAX_IMAGE_BYTES and quality >= 50:
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality, optimize=True)
        data, quality = out.getvalue(), quality - 10
    return data


def menu_body(image: bytes) -> dict[str, Any]:
    """The rich menu object; its name carries a digest of the areas and the image."""
    areas = menu_areas()
    digest = hashlib.sha256(json.dumps(areas, sort_keys=True, ensure_ascii=False).encode() + image).hexdigest()[:16]
    return {"size": {"width": WIDTH_PX, "height": HEIGHT_PX}, "selected": True, "name": NAME_PREFIX + digest,
            "chatBarText": CHAT_BAR_TEXT, "areas": areas}


def image_type(image: bytes) -> str:
    return "image/png" if image[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"


@dataclass
class SetupResult:
    rich_menu_id: str
    created: bool                      # False: an identical menu was already there and is reused
    default_was_set: bool              # False: it was already the default
    deleted: list[str] = field(default_factory=list)  # floodwatch's older or broken menus removed
    image_bytes: int = 0


def setup_rich_menu(line: Any, image: bytes | None = None) -> SetupResult:
    """Create (or reuse), upload, set default, and remove floodwatch's other menus; safe to re-run.

    Parameters
    ----------
    line : alerts.line_client.LineClient
    image : bytes, optional
        The menu image (default: :func:`draw_menu`).

    Raises
    ------
    floodwatch.errors.LineApiError
        When LINE refuses a step; nothing half-made is left behind (a menu
        created in this run without its image is deleted again).
    """
    image = draw_menu() if image is None else image
    body = menu_body(image)
    ours = [m for m in line.rich_menus() if str(m.get("name", "")).startswith(NAME_PREFIX)]
    deleted: list[str] = []
    keep: str | None = None
    for menu in ours:
        if menu["name"] == body["name"] and keep is None:
            if line.rich_menu_has_image(menu["richMenuId"]):
                keep = menu["richMenuId"]
                continue
            log.info("event=rich_menu_without_image id=%s; deleting it", menu["richMenuId"])
    created = keep is None
    if keep is None:
        keep = line.create_rich_menu(body)
        try:
            line.upload_rich_menu_image(keep, image, image_type(image))
        except LineApiError:
            line.delete_rich_menu(keep)  # a menu without an image cannot be the default: do not leave it
            raise
    default_was_set = line.default_rich_menu() != keep
    if default_was_set:
        line.set_default_rich_menu(keep)
    for menu in ours:
        if menu["richMenuId"] != keep:
            line.delete_rich_menu(menu["richMenuId"])
            deleted.append(menu["richMenuId"])
    log.info("event=rich_menu_ready id=%s created=%s default_set=%s deleted=%d bytes=%d", keep, created,
             default_was_set, len(deleted), len(image))
    return SetupResult(keep, created, default_was_set, deleted, len(image))
