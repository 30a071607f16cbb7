"""Bodies are checked against LINE's own spec (discriminator included) and LINE's documented limits."""

from __future__ import annotations

import json

import pytest
from linebot.v3.messaging import (
    FlexBox,
    FlexBubble,
    FlexMessage,
    FlexText,
    Message,
    MessageAction,
    MulticastRequest,
    QuickReply,
    QuickReplyItem,
    TextMessage,
)
from linebot.v3.messaging.exceptions import ApiException

from floodwatch.line_standin import new_user_id, utf16_length


def _rejected(api, request) -> dict:
    with pytest.raises(ApiException) as caught:
        api.multicast(request)
    assert caught.value.status == 400, caught.value.body
    return json.loads(caught.value.body)


def _multicast(messages, to=None):
    # construct() skips line-bot-sdk's own checks so the stand-in sees what a careless client would send.
    return MulticastRequest.construct(to=to or [new_user_id()], messages=messages)


def test_unknown_message_type_is_400_at_messages_type(standin, api):
    body = _rejected(api, _multicast([Message.construct(type="bogus")]))
    assert body["message"] == "The request body has 1 error(s)"
    (detail,) = body["details"]
    assert detail["property"] == "messages[0].type"
    assert "text" in detail["message"] and "flex" in detail["message"]
    assert standin.delivered_messages() == []


def test_discriminator_applies_the_mapped_schema(standin, api):
    # {"type": "text"} satisfies Message; only TextMessage (via the discriminator) requires text.
    body = _rejected(api, _multicast([Message.construct(type="text")]))
    assert body["details"] == [{"message": "must be specified", "property": "messages[0].text"}]


def test_six_messages_is_400(standin, api):
    body = _rejected(api, _multicast([TextMessage(text=str(i)) for i in range(6)]))
    assert {"message": "Size must be between 1 and 5", "property": "messages"} in body["details"]


def test_501_recipients_is_400_and_500_is_fine(standin, api):
    text = [TextMessage(text="x")]
    body = _rejected(api, _multicast(text, to=[new_user_id() for _ in range(501)]))
    assert body["details"] == [{"message": "Size must be between 1 and 500", "property": "to"}]
    api.multicast(MulticastRequest(to=[new_user_id() for _ in range(500)], messages=text))
    assert len(standin.delivered_messages()) == 500


def test_recipient_that_is_not_a_string_is_400(standin, raw):
    status, _, body = raw(standin, "POST", "/v2/bot/message/multicast",
                          {"to": ["U1", 7], "messages": [{"type": "text", "text": "x"}]})
    assert status == 400
    assert body["details"] == [{"message": "must be of type string", "property": "to[1]"}]


@pytest.mark.parametrize(
    "text, accepted",
    [
        ("น้ำ" * 1666 + "ท่", True),  # Thai: 5,000 code units, tone marks count one each
        ("น้ำ" * 1667, False),  # 5,001
        ("🌊" * 2500, True),  # an emoji is 2 UTF-16 code units: 5,000
        ("🌊" * 2500 + "a", False),  # 2,501 characters but 5,001 code units
    ],
)
def test_text_length_is_counted_in_utf16_code_units(standin, api, text, accepted):
    assert (utf16_length(text) <= 5000) is accepted
    request = MulticastRequest(to=[new_user_id()], messages=[TextMessage(text=text)])
    if accepted:
        api.multicast(request)
        assert len(standin.delivered_messages()) == 1
    else:
        body = _rejected(api, request)
        assert body["details"] == [{"message": "Length must be between 0 and 5000", "property": "messages[0].text"}]


def _bubble(text: str) -> FlexBubble:
    return FlexBubble(body=FlexBox(layout="vertical", contents=[FlexText(text=text)]))


def test_flex_alt_text_and_bubble_size_limits(standin, api):
    ok = FlexMessage(alt_text="ระดับน้ำ", contents=_bubble("1.42 m"))
    api.multicast(MulticastRequest(to=[new_user_id()], messages=[ok]))

    long_alt = FlexMessage(alt_text="ก" * 1501, contents=_bubble("1.42 m"))
    body = _rejected(api, MulticastRequest(to=[new_user_id()], messages=[long_alt]))
    assert body["details"] == [{"message": "Length must be between 0 and 1500", "property": "messages[0].altText"}]

    huge = FlexMessage(alt_text="x", contents=_bubble("x" * 31_000))
    body = _rejected(api, MulticastRequest(to=[new_user_id()], messages=[huge]))
    assert body["details"][0]["property"] == "messages[0].contents"
    assert "30 KB" in body["details"][0]["message"]


def test_flex_component_errors_are_found_deep_inside(standin, raw):
    contents = [{"type": "text", "text": "1.42 m", "align": "middle"}, {"type": "gauge"}, {"type": "box"}]
    bubble = {"type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": contents}}
    message = {"type": "flex", "altText": "x", "contents": bubble}
    status, _, body = raw(standin, "POST", "/v2/bot/message/push", {"to": new_user_id(), "messages": [message]})
    assert status == 400
    where = "messages[0].contents.body.contents"
    properties = {d["property"] for d in body["details"]}
    assert properties == {f"{where}[0].align", f"{where}[1].type", f"{where}[2].layout", f"{where}[2].contents"}
    assert body["message"] == "The request body has 4 error(s)"


def test_quick_reply_allows_13_items_not_14(standin, api):
    def with_items(n: int) -> TextMessage:
        items = [QuickReplyItem(action=MessageAction(label=f"หมู่ {i}", text=f"zone {i}")) for i in range(n)]
        return TextMessage(text="เลือกหมู่บ้าน", quick_reply=QuickReply.construct(items=items))

    api.multicast(MulticastRequest(to=[new_user_id()], messages=[with_items(13)]))
    body = _rejected(api, _multicast([with_items(14)]))
    assert body["details"] == [
        {"message": "Size must be between 0 and 13", "property": "messages[0].quickReply.items"}
    ]


def test_malformed_json_is_400_and_changes_nothing(standin, raw):
    status, headers, body = raw(standin, "POST", "/v2/bot/message/multicast", raw=b'{"to": [')
    assert status == 400 and body["details"][0]["message"] == "Invalid JSON"
    assert "x-line-request-id" in headers
    assert standin.delivered_messages() == [] and standin.quota_used() == 0


def test_validate_endpoint_checks_without_sending(standin, raw):
    good = {"messages": [{"type": "text", "text": "x"}]}
    assert raw(standin, "POST", "/v2/bot/message/validate/multicast", good)[0] == 200
    status, _, body = raw(standin, "POST", "/v2/bot/message/validate/multicast", {"messages": [{"type": "text"}]})
    assert status == 400 and body["details"][0]["property"] == "messages[0].text"
    assert standin.delivered_messages() == []
