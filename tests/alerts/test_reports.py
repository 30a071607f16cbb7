"""Residents' flood reports over real signed webhooks: consent, location, photo, depth, and every refusal.

A real uvicorn server runs the webhook; the LINE stand-in sends the events,
serves the photos at its content endpoint, and receives the replies (which it
validates against LINE's spec). Nothing here is mocked.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from PIL import Image

from floodwatch.alerts import AlertService
from floodwatch.line_standin import location_message_event, new_user_id, postback_event, text_message_event

from tests.alerts.conftest import SECRET

INSIDE = (14.0140, 100.1190)     # Moo 5, by Wat Lam Phaya's floating market, 200 m from gauge LP-W01
BANGKOK = (13.7563, 100.5018)    # about 50 km away


@pytest.fixture
def webhook_url(service: AlertService) -> Iterator[str]:
    app = FastAPI()
    app.include_router(service.webhook_router())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}/line/webhook"
    server.should_exit = True
    thread.join(5)


def photo_jpeg(width: int = 1200, height: int = 900, *, with_exif: bool = True) -> bytes:
    image = Image.new("RGB", (width, height), (90, 120, 150))
    exif = Image.Exif()
    if with_exif:
        exif[0x010F] = "PhoneMaker"          # Make
        exif[0x0110] = "Model X"             # Model
        exif[0x8825] = {1: "N", 2: (14.0, 0.0, 50.4)}  # GPSInfo: where the resident stood
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=90)
    return out.getvalue()


class Resident:
    """One LINE user talking to the webhook through the stand-in."""

    def __init__(self, standin, url: str) -> None:
        self.standin, self.url, self.user = standin, url, new_user_id()

    def send(self, *events) -> int:
        return self.standin.send_webhook(self.url, SECRET, list(events)).status

    def postback(self, data: str) -> int:
        return self.send(postback_event(self.user, data))

    def text(self, text: str) -> int:
        return self.send(text_message_event(self.user, text))

    def location(self, lat: float, lon: float) -> int:
        return self.send(location_message_event(self.user, lat, lon, address="ตำบลลำพญา"))

    def photo(self, data: bytes, content_type: str = "image/jpeg", kind: str = "image") -> int:
        return self.send(self.standin.media_event(self.user, data, content_type, kind))

    def replies(self) -> list[dict]:
        return self.standin.messages_for(self.user)

    def last(self) -> dict:
        got = self.replies()
        assert got, "no reply reached the resident"
        return got[-1]

    def report(self, depth: str = "knee", where: tuple[float, float] = INSIDE) -> None:
        self.postback("action=report")
        if "ยินยอม" in self.last()["text"] and "ยินยอมให้เก็บข้อมูลนี้หรือไม่" in self.last()["text"]:
            self.postback("action=report_consent&answer=yes")
        self.location(*where)
        self.postback(f"action=report_depth&depth={depth}")


def _quick_actions(message: dict) -> list[dict]:
    return [item["action"] for item in message.get("quickReply", {}).get("items", [])]


def photos_in(service: AlertService) -> list[Path]:
    folder = Path(service.settings.reports.photo_dir)
    return sorted(folder.glob("*.jpg")) if folder.exists() else []


def test_a_first_report_asks_consent_then_takes_location_photo_and_depth_and_thanks(service, standin, webhook_url):
    resident = Resident(standin, webhook_url)
    assert resident.postback("action=report") == 200
    consent = resident.last()
    assert consent["text"].startswith("🔒 ก่อนแจ้งน้ำท่วม") and "— English —" in consent["text"]
    assert "30 วัน" in consent["text"] and "PDPA" in consent["text"]
    assert [a["data"] for a in _quick_actions(consent)] == ["action=report_consent&answer=yes",
                                                            "action=report_consent&answer=no"]
    assert not service.residents.book.consented(resident.user)

    resident.postback("action=report_consent&answer=yes")
    ask = resident.last()
    assert "ส่งตำแหน่ง" in ask["text"] and _quick_actions(ask)[0]["type"] == "location"

    resident.location(*INSIDE)
    depth = resident.last()
    kinds = [a["type"] for a in _quick_actions(depth)]
    assert kinds == ["postback"] * 4 + ["camera", "cameraRoll", "postback"]
    assert [a["data"] for a in _quick_actions(depth)[:4]] == [f"action=report_depth&depth={d}"
                                                              for d in ("ankle", "knee", "waist", "road_closed")]

    original = photo_jpeg()
    resident.photo(original)
    assert resident.last()["text"].startswith("📷 ได้รับรูปแล้ว")
    resident.postback("action=report_depth&depth=knee")
    thanks = resident.last()["text"]
    assert thanks.startswith("🙏 ขอบคุณค่ะ ได้รับรายงาน R") and "ระดับเข่า" in thanks and "Thank you" in thanks

    [report] = service.reports(officer=True)
    assert report["depth"] == "knee" and report["zone"] == "moo-5" and report["status"] == "new"
    assert report["near_station"] == "LP-W01" and report["has_photo"] and report["address"] == "ตำบลลำพญา"
    assert report["id"] in thanks and "user_id" not in report
    [kept] = photos_in(service)
    with Image.open(kept) as image:
        assert image.format == "JPEG" and dict(image.getexif()) == {}, "the phone's EXIF (GPS, model) is dropped"
    # a report is for officers: it decides no alert and changes no level
    assert service.log() == []
    assert {z["level"] for z in service.zone_levels().values()} == {0}
    assert service.reports() == [], "unverified reports are for logged-in officers only"


def test_declining_keeps_nothing_and_the_resident_is_asked_again_next_time(service, standin, webhook_url):
    resident = Resident(standin, webhook_url)
    resident.postback("action=report")
    resident.postback("action=report_consent&answer=no")
    assert "ไม่มีการเก็บข้อมูลใด ๆ" in resident.last()["text"] and "1784" in resident.last()["text"]
    resident.location(*INSIDE)  # a location without consent is not kept either
    assert "ยินยอมให้เก็บข้อมูลนี้หรือไม่" in resident.last()["text"]
    resident.postback("action=report_depth&depth=waist")
    assert service.residents.book.draft(resident.user) is None
    assert not service.residents.book.consented(resident.user)
    assert service.reports(officer=True) == []
    resident.text("แจ้งน้ำท่วม")
    assert "ยินยอมให้เก็บข้อมูลนี้หรือไม่" in resident.last()["text"]


def test_a_location_far_outside_the_municipality_is_refused_and_not_kept(service, standin, webhook_url):
    resident = Resident(standin, webhook_url)
    resident.postback("action=report")
    resident.postback("action=report_consent&answer=yes")
    resident.location(*BANGKOK)
    refusal = resident.last()["text"]
    th, en = refusal.split("— English —")
    assert "อยู่นอกเทศบาลตำบลลำพญา" in th and "กม." in th
    assert "outside Lam Phaya" in en and "not kept" in en
    assert service.residents.book.draft(resident.user) is None
    resident.postback("action=report_depth&depth=knee")
    assert service.reports(officer=True) == []


def test_a_20_mb_photo_is_refused_and_nothing_is_written(service, standin, webhook_url):
    resident = Resident(standin, webhook_url)
    resident.postback("action=report")
    resident.postback("action=report_consent&answer=yes")
    resident.location(*INSIDE)
    huge = photo_jpeg()[:-2] + bytes(20_000_000) + b"\xff\xd9"
    resident.photo(huge)
    text = resident.last()["text"]
    assert text.startswith("รูปใหญ่เกินไป (20.0 MB สูงสุด 10 MB)") and "too large" in text
    assert photos_in(service) == []
    assert service.residents.book.draft(resident.user)["photo"] is None


def test_a_video_is_refused_without_downloading_it(service, standin, webhook_url):
    resident = Resident(standin, webhook_url)
    resident.postback("action=report")
    resident.postback("action=report_consent&answer=yes")
    resident.location(*INSIDE)
    event = standin.media_event(resident.user, b"\x00\x00\x00\x18ftypmp42" + bytes(1000), "video/mp4", "video")
    resident.send(event)
    text = resident.last()["text"]
    assert "ไม่รับวิดีโอ" in text and "this is a video" in text
    assert standin.requests(f"/v2/bot/message/{event['message']['id']}/content") == []
    assert photos_in(service) == []


def test_an_image_message_that_is_not_a_photo_is_refused(service, standin, webhook_url):
    resident = Resident(standin, webhook_url)
    resident.postback("action=report")
    resident.postback("action=report_consent&answer=yes")
    resident.location(*INSIDE)
    resident.photo(b"GIF89a" + bytes(500), "image/gif")
    assert "รับได้เฉพาะรูปถ่าย" in resident.last()["text"]
    resident.photo(b"\xff\xd8\xff\xe0 this is not really a JPEG" + bytes(300), "image/jpeg")
    assert "รับได้เฉพาะรูปถ่าย" in resident.last()["text"] and "not an image" in resident.last()["text"]
    assert photos_in(service) == []


def test_unsigned_and_replayed_webhooks_change_nothing(service, standin, webhook_url):
    resident = Resident(standin, webhook_url)
    resident.postback("action=report")
    resident.postback("action=report_consent&answer=yes")
    resident.location(*INSIDE)
    depth = postback_event(resident.user, "action=report_depth&depth=waist")
    forged = standin.send_webhook(webhook_url, SECRET, [depth], signature="bm90IHRoZSBzaWduYXR1cmU=")
    assert forged.status == 401 and service.reports(officer=True) == []
    assert resident.send(depth) == 200
    assert len(service.reports(officer=True)) == 1
    # the same event again (a replay, or LINE redelivering it) is answered 200 and acted on once
    resident.location(*INSIDE)
    assert standin.send_webhook(webhook_url, SECRET, [depth]).status == 200
    assert len(service.reports(officer=True)) == 1
    unsigned = standin.send_webhook(webhook_url, SECRET, [postback_event(resident.user, "action=report")],
                                    signature="")
    assert unsigned.status == 400


def test_a_resident_spamming_reports_is_limited_with_a_reason(alert_settings, clock, standin):
    alert_settings.reports.max_reports_per_hour = 2
    alert_settings.reports.max_steps_per_hour = 12
    with AlertService(alert_settings, clock) as service:
        app = FastAPI()
        app.include_router(service.webhook_router())
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               lifespan="off"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        try:
            resident = Resident(standin, f"http://127.0.0.1:{port}/line/webhook")
            resident.report("ankle")
            resident.report("knee")
            resident.postback("action=report")
            refusal = resident.last()["text"]
            assert "แจ้งมาแล้ว 2 ครั้งในชั่วโมงนี้" in refusal and "you have sent 2 reports this hour" in refusal
            assert len(service.reports(officer=True)) == 2

            # another resident floods the chat with locations: steps stop being kept at the limit
            spammer = Resident(standin, resident.url)
            spammer.postback("action=report")
            spammer.postback("action=report_consent&answer=yes")
            for _ in range(20):
                spammer.location(*INSIDE)
            assert "ส่งข้อมูลถี่เกินไป" in spammer.last()["text"] and "Too many messages" in spammer.last()["text"]
            assert len(service.residents.book.recent(spammer.user)) == 12
            spammer.postback("action=report_depth&depth=waist")
            assert len(service.reports(officer=True)) == 2
            # an hour later (real time) the limits are lifted
            book = service.residents.book
            book.wall_clock = lambda: time.time() + 3601
            spammer.location(*INSIDE)
            spammer.postback("action=report_depth&depth=waist")
            assert len(service.reports(officer=True)) == 3
        finally:
            server.should_exit = True
            thread.join(5)


def test_officers_moderate_and_the_page_hears_of_every_change(service, standin, webhook_url):
    heard: list[tuple[str, dict]] = []
    service.add_listener(lambda kind, data: heard.append((kind, data)))
    resident = Resident(standin, webhook_url)
    resident.report("road_closed")
    [report] = service.reports(officer=True)
    assert heard[-1] == ("report", {"id": report["id"], "status": "new", "ts_s": report["ts_s"]})
    verified = service.moderate_report(report["id"], "verified", by="somchai")
    assert verified["status"] == "verified" and verified["moderated_by"] == "somchai"
    assert [r["id"] for r in service.reports()] == [report["id"]], "verified reports are public"
    service.moderate_report(report["id"], "hidden", by="somchai")
    assert service.reports() == [] and service.reports(officer=True)[0]["status"] == "hidden"
    assert [k for k, _ in heard] == ["report", "report", "report"]
    assert service.moderate_report("R00000000", "verified", by="x") is None
    assert service.log() == [], "moderating a report raises no alert either"


def test_retention_deletes_photos_and_unlinks_residents_after_the_configured_days(service, standin, webhook_url):
    resident = Resident(standin, webhook_url)
    resident.postback("action=report")
    resident.postback("action=report_consent&answer=yes")
    resident.location(*INSIDE)
    resident.photo(photo_jpeg())
    resident.postback("action=report_depth&depth=ankle")
    assert len(photos_in(service)) == 1
    book = service.residents.book
    assert book.housekeeping() == {"anonymised": 0, "drafts_dropped": 0, "photos_deleted": 0}
    days = service.settings.reports.retention_days
    book.wall_clock = lambda: time.time() + days * 86400 + 60
    assert book.housekeeping() == {"anonymised": 1, "drafts_dropped": 0, "photos_deleted": 1}
    [report] = service.reports(officer=True)
    assert report["anonymised"] and not report["has_photo"] and report["depth"] == "ankle"
    assert photos_in(service) == []
