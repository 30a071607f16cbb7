"""Rich menus, user content and Flex rules in the stand-in, driven by the real line-bot-sdk."""

from __future__ import annotations

import io
import json
import random

import pytest
from linebot.v3.messaging import (
    ApiClient,
    ApiException,
    Configuration,
    MessagingApiBlob,
    PostbackAction,
    RichMenuArea,
    RichMenuBounds,
    RichMenuRequest,
    RichMenuSize,
)
from linebot.v3.webhook import WebhookParser
from PIL import Image

from floodwatch.line_standin import (
    location_message_event,
    media_message_event,
    new_user_id,
    sign,
    webhook_body,
    webhook_spec,
)
from floodwatch.line_standin._richmenu import image_size

from tests.line_standin.conftest import TOKEN


@pytest.fixture
def blob(standin):
    client = ApiClient(Configuration(host=standin.base_url, access_token=TOKEN))
    yield MessagingApiBlob(client)
    client.close()


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (13, 71, 161)).save(out, "PNG")
    return out.getvalue()


def _jpeg(width: int, height: int, quality: int = 85) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(out, "JPEG", quality=quality)
    return out.getvalue()


def _menu(width: int = 2500, height: int = 843, areas: int = 2, chat_bar: str = "เมนู") -> RichMenuRequest:
    step = width // areas
    # construct(): the SDK's own length checks would stop some bad menus before they reach the stand-in
    return RichMenuRequest.construct(
        size=RichMenuSize(width=width, height=height), selected=True, name="floodwatch test", chatBarText=chat_bar,
        areas=[RichMenuArea(bounds=RichMenuBounds(x=i * step, y=0, width=step, height=height),
                            action=PostbackAction(label=f"b{i}", data=f"action=b{i}")) for i in range(areas)])


def _status(call) -> tuple[int, dict]:
    with pytest.raises(ApiException) as caught:
        call()
    return caught.value.status, json.loads(caught.value.body or "{}")


def test_image_size_reads_png_and_jpeg_headers():
    assert image_size(_png(2500, 843)) == ("image/png", 2500, 843)
    assert image_size(_jpeg(1200, 405)) == ("image/jpeg", 1200, 405)
    assert image_size(b"GIF89a....") is None


def test_create_upload_set_default_list_and_delete_with_line_bot_sdk(standin, api, blob):
    menu_id = api.create_rich_menu(_menu()).rich_menu_id
    assert menu_id.startswith("richmenu-") and len(menu_id) == len("richmenu-") + 32

    # no image yet: LINE refuses to make it the default
    status, body = _status(lambda: api.set_default_rich_menu(menu_id))
    assert (status, body["message"]) == (400, "must upload richmenu image before applying it to user")

    image = _png(2500, 843)
    blob.set_rich_menu_image(menu_id, image, _headers={"Content-Type": "image/png"})
    api.set_default_rich_menu(menu_id)
    assert api.get_default_rich_menu_id().rich_menu_id == menu_id
    assert bytes(blob.get_rich_menu_image(menu_id)) == image
    listed = api.get_rich_menu_list().richmenus
    assert [m.rich_menu_id for m in listed] == [menu_id] and listed[0].chat_bar_text == "เมนู"

    # an image cannot be replaced: make a new menu
    status, body = _status(lambda: blob.set_rich_menu_image(menu_id, image, _headers={"Content-Type": "image/png"}))
    assert (status, body["message"]) == (400, "An image has already been uploaded to the richmenu")

    api.delete_rich_menu(menu_id)
    assert api.get_rich_menu_list().richmenus == []
    status, _ = _status(lambda: api.get_default_rich_menu_id())
    assert status == 404
    status, body = _status(lambda: api.get_rich_menu(menu_id))
    assert (status, body) == (404, {"message": "Not found"})


@pytest.mark.parametrize(("menu", "property_", "message"), [
    (_menu(width=700, height=300), "size.width", "must be between 800 and 2500"),
    (_menu(width=1200, height=1000), "size", "width/height must be at least 1.45"),
    (_menu(width=2500, height=200), "size.height", "must be at least 250"),
    (_menu(areas=21), "areas", "Size must be between 0 and 20"),
    (_menu(chat_bar="ข้อความยาวเกินสิบสี่ตัว"), "chatBarText", "Length must be between 0 and 14"),
])
def test_menus_outside_lines_limits_are_refused_with_details(standin, api, menu, property_, message):
    status, body = _status(lambda: api.create_rich_menu(menu))
    assert status == 400
    assert {"message": message, "property": property_} in body["details"]
    assert standin.rich_menus() == []


def test_an_area_outside_the_menu_and_a_missing_field_are_refused(standin, raw):
    body = {"size": {"width": 2500, "height": 843}, "selected": False, "name": "x",
            "areas": [{"bounds": {"x": 2000, "y": 0, "width": 600, "height": 843},
                       "action": {"type": "postback", "data": "a=1"}}]}
    status, _, answer = raw(standin, "POST", "/v2/bot/richmenu", body)
    assert status == 400
    assert {"message": "must be specified", "property": "chatBarText"} in answer["details"]
    assert {"message": "The area is out of the rich menu's size", "property": "areas[0].bounds"} in answer["details"]
    # the validate endpoint says the same and creates nothing
    status, _, _ = raw(standin, "POST", "/v2/bot/richmenu/validate", body)
    assert status == 400 and standin.rich_menus() == []


def test_images_of_the_wrong_size_type_or_weight_are_refused(standin, api, blob):
    menu_id = api.create_rich_menu(_menu()).rich_menu_id
    status, body = _status(lambda: blob.set_rich_menu_image(menu_id, _png(2500, 1686),
                                                            _headers={"Content-Type": "image/png"}))
    assert status == 400 and "2500x843" in body["message"]
    status, _ = _status(lambda: blob.set_rich_menu_image(menu_id, b"GIF89a" + b"0" * 100,
                                                         _headers={"Content-Type": "image/gif"}))
    assert status == 415
    status, body = _status(lambda: blob.set_rich_menu_image(menu_id, _jpeg(2500, 843),
                                                            _headers={"Content-Type": "image/png"}))
    assert status == 400 and "not a valid PNG" in body["message"]
    noise = Image.frombytes("RGB", (2500, 843), random.Random(1).randbytes(2500 * 843 * 3))
    heavy = io.BytesIO()
    noise.save(heavy, "PNG")
    assert len(heavy.getvalue()) > 1_000_000
    status, body = _status(lambda: blob.set_rich_menu_image(menu_id, heavy.getvalue(),
                                                            _headers={"Content-Type": "image/png"}))
    assert status == 400 and "at most 1 MB" in body["message"]
    assert standin.rich_menu_image(menu_id) is None


def test_content_endpoint_serves_what_a_user_sent_and_404_otherwise(standin, blob):
    user = new_user_id()
    photo = _jpeg(640, 480)
    event = standin.media_event(user, photo, "image/jpeg")
    assert bytes(blob.get_message_content(event["message"]["id"])) == photo
    request = standin.requests(f"/v2/bot/message/{event['message']['id']}/content")[-1]
    assert request.status == 200
    status, body = _status(lambda: blob.get_message_content("123456789012345678"))
    assert (status, body) == (404, {"message": "Not found"})


def test_location_image_and_video_events_validate_and_parse():
    user = new_user_id()
    events = [location_message_event(user, 14.0140, 100.1190, title="ตลาดน้ำ", address="ลำพญา"),
              media_message_event(user, "image"), media_message_event(user, "video", duration_ms=8000)]
    body = webhook_body(events)
    assert webhook_spec().errors("CallbackRequest", json.loads(body)) == []
    parsed = WebhookParser("s").parse(body.decode(), sign("s", body))
    assert [e.message.type for e in parsed] == ["location", "image", "video"]
    assert parsed[0].message.latitude == pytest.approx(14.0140)


def _flex(body_contents: list[dict], **bubble: object) -> dict:
    return {"type": "flex", "altText": "ระดับน้ำ",
            "contents": {"type": "bubble", **bubble,
                         "body": {"type": "box", "layout": "vertical", "contents": body_contents}}}


@pytest.mark.parametrize(("contents", "bubble", "property_"), [
    ([{"type": "icon", "url": "https://example.org/i.png"}], {}, "body.contents[0].type"),
    ([{"type": "text", "text": "x", "color": "red"}], {}, "body.contents[0].color"),
    ([{"type": "text", "text": "x", "size": "huge"}], {}, "body.contents[0].size"),
    ([{"type": "span", "text": "x"}], {}, "body.contents[0].type"),
    ([{"type": "text"}], {}, "body.contents[0].text"),
    ([{"type": "box", "layout": "baseline", "contents": [{"type": "separator"}]}], {},
     "body.contents[0].contents[0].type"),
    ([{"type": "box", "layout": "vertical", "contents": [], "width": "wide"}], {}, "body.contents[0].width"),
    ([{"type": "text", "text": "x", "flex": -1}], {}, "body.contents[0].flex"),
    ([{"type": "text", "text": "x"}], {"hero": {"type": "text", "text": "x"}}, "hero.type"),
])
def test_bad_flex_bubbles_are_refused_the_way_line_would(standin, raw, contents, bubble, property_):
    message = _flex(contents, **bubble)
    status, _, body = raw(standin, "POST", "/v2/bot/message/validate/push", {"to": new_user_id(),
                                                                             "messages": [message]})
    assert status == 400, body
    assert f"messages[0].contents.{property_}" in {d["property"] for d in body["details"]}


def test_a_well_formed_flex_bubble_with_every_kind_of_value_passes(standin, raw):
    contents = [
        {"type": "text", "text": "1.95 ม.รทก.", "size": "xl", "color": "#C62828", "weight": "bold"},
        {"type": "box", "layout": "baseline", "spacing": "sm", "contents": [
            {"type": "icon", "url": "https://example.org/i.png", "size": "sm"},
            {"type": "text", "text": "x", "flex": 0, "contents": [{"type": "span", "text": "a", "size": "12px"}]}]},
        {"type": "box", "layout": "vertical", "contents": [], "width": "40%", "height": "8px",
         "backgroundColor": "#E0E0E0CC", "cornerRadius": "4px", "offsetTop": "2px"},
        {"type": "separator", "margin": "md", "color": "#BDBDBD"},
    ]
    message = _flex(contents, size="kilo", styles={"body": {"backgroundColor": "#FFFFFF"}})
    status, _, body = raw(standin, "POST", "/v2/bot/message/validate/push", {"to": new_user_id(),
                                                                             "messages": [message]})
    assert (status, body) == (200, {})
