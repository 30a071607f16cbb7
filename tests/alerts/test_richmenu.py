"""The rich menu: drawn in Thai within LINE's limits, set up idempotently through the real SDK and the stand-in."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from PIL import Image, ImageDraw, features

from floodwatch.alerts import richmenu
from floodwatch.alerts.line_client import LineClient
from floodwatch.errors import LineApiError
from floodwatch.line_standin import LineStandIn
from floodwatch.settings import PROJECT_ROOT

from tests.alerts.conftest import TOKEN


@pytest.fixture(scope="module")
def image() -> bytes:
    return richmenu.draw_menu()


@pytest.fixture
def line(standin):
    with LineClient(standin.base_url, TOKEN, 5.0, data_api_base_url=standin.base_url) as client:
        yield client


def test_the_image_is_within_lines_limits(image):
    with Image.open(io.BytesIO(image)) as im:
        assert im.format == "PNG" and im.size == (2500, 1686)
    assert len(image) <= 1_000_000
    assert 2500 / 1686 >= 1.45
    body = richmenu.menu_body(image)
    assert len(body["chatBarText"]) <= 14 and len(body["areas"]) == 5
    covered = sum(a["bounds"]["width"] * a["bounds"]["height"] for a in body["areas"])
    assert covered == 2500 * 1686, "the five buttons tile the whole menu"
    assert [a["action"]["data"] for a in body["areas"]] == ["action=menu_status", "action=menu_tide",
                                                            "action=report", "action=menu_zone", "action=menu_prepare"]


def test_thai_is_shaped_with_a_real_thai_font_not_boxes():
    font_path = richmenu.find_font()
    assert "tlwg" in str(font_path)
    assert features.check("raqm"), "Pillow without raqm stacks Thai tone marks on top of vowels"
    font = richmenu._font(font_path, 80)

    def ink(text: str) -> bytes:
        im = Image.new("L", (400, 160), 0)
        ImageDraw.Draw(im).text((20, 20), text, font=font, fill=255)
        return im.tobytes()

    # a font without Thai draws every Thai letter as the same box
    assert ink("น") != ink("ม") != ink("ก")
    # น้ำ: the tone mark sits above sara am's circle, so the shaped word is taller than its base letters
    tall = Image.new("L", (400, 200), 0)
    ImageDraw.Draw(tall).text((20, 40), "น้ำ", font=font, fill=255)
    base = Image.new("L", (400, 200), 0)
    ImageDraw.Draw(base).text((20, 40), "นา", font=font, fill=255)
    assert tall.getbbox()[1] < base.getbbox()[1]


def test_setup_creates_uploads_sets_default_and_reruns_without_piling_up(standin, line, image):
    first = richmenu.setup_rich_menu(line, image)
    assert first.created and first.default_was_set and first.deleted == []
    assert standin.default_rich_menu() == first.rich_menu_id
    assert standin.rich_menu_image(first.rich_menu_id) == image

    again = richmenu.setup_rich_menu(line, image)
    assert (again.rich_menu_id, again.created, again.default_was_set) == (first.rich_menu_id, False, False)
    assert len(standin.rich_menus()) == 1

    new_image = _variant(image)
    replaced = richmenu.setup_rich_menu(line, new_image)
    assert replaced.created and replaced.rich_menu_id != first.rich_menu_id
    assert replaced.deleted == [first.rich_menu_id]
    assert [m["richMenuId"] for m in standin.rich_menus()] == [replaced.rich_menu_id]
    assert standin.default_rich_menu() == replaced.rich_menu_id


def _variant(image: bytes) -> bytes:
    with Image.open(io.BytesIO(image)) as im:
        im = im.copy()
    ImageDraw.Draw(im).rectangle((0, 0, 40, 40), fill="#FFFFFF")
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def test_a_half_made_menu_is_removed_and_other_peoples_menus_are_left_alone(standin, line, image):
    body = richmenu.menu_body(image)
    broken = line.create_rich_menu(body)  # an earlier run stopped before uploading the image
    theirs = line.create_rich_menu({**body, "name": "municipality campaign", "selected": False})
    result = richmenu.setup_rich_menu(line, image)
    assert result.created and broken in result.deleted and theirs not in result.deleted
    assert sorted(m["richMenuId"] for m in standin.rich_menus()) == sorted([result.rich_menu_id, theirs])
    assert standin.default_rich_menu() == result.rich_menu_id


def test_a_refused_upload_leaves_no_menu_behind(standin, line):
    too_small = io.BytesIO()
    Image.new("RGB", (1200, 800), "#0D47A1").save(too_small, "PNG")
    with pytest.raises(LineApiError) as refused:
        richmenu.setup_rich_menu(line, too_small.getvalue())
    assert refused.value.status == 400 and "2500x1686" in refused.value.message
    assert standin.rich_menus() == [] and standin.default_rich_menu() is None


def test_floodwatch_line_setup_command_against_the_stand_in(tmp_path):
    with LineStandIn(tokens={"cli-token"}) as standin:
        env = {**os.environ, "FLOODWATCH_LINE__API_BASE_URL": standin.base_url,
               "FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN": "cli-token", "PYTHONPATH": str(PROJECT_ROOT)}
        command = [sys.executable, "-m", "floodwatch.cli.main", "line", "setup", "--save-image",
                   str(tmp_path / "menu.png")]
        first = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        print(first.stdout)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "created and image uploaded" in first.stdout and "set for every resident" in first.stdout
        second = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0 and "unchanged, reused" in second.stdout
        assert "already the default" in second.stdout
        assert len(standin.rich_menus()) == 1
        assert (tmp_path / "menu.png").read_bytes() == standin.rich_menu_image(standin.default_rich_menu())
        wrong = subprocess.run(command, env={**env, "FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN": "wrong"}, cwd=tmp_path,
                               capture_output=True, text=True, timeout=120)
        assert wrong.returncode == 1 and "FAIL rich menu: LINE answered 401" in wrong.stdout
        assert "Traceback" not in wrong.stdout + wrong.stderr
