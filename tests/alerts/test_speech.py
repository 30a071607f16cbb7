"""The spoken Thai loudspeaker message: espeak-ng offline, checked for silence and a plausible length."""

from __future__ import annotations

import io
import math
import struct
import wave

import pytest

from floodwatch.alerts import speech

TEXT = "ประกาศจากเทศบาลตำบลลำพญา เตือนภัย น้ำท่วม หมู่ 6 ชุมชนที่ลุ่มต่ำ ยกของขึ้นที่สูง"


def _wav(seconds: float, amplitude: float, rate: int = 22050) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        n = int(seconds * rate)
        w.writeframes(b"".join(struct.pack("<h", int(amplitude * 32767 * math.sin(2 * math.pi * 220 * k / rate)))
                               for k in range(n)))
    return out.getvalue()


def test_espeak_ng_speaks_thai_and_the_file_is_loud_and_long_enough(tmp_path):
    assert speech.espeak() is not None, "espeak-ng is not installed; run scripts/setup --test"
    out = tmp_path / "announcement.wav"
    assert speech.speak_thai(TEXT, out) is None
    stats = speech.wav_stats(out.read_bytes())
    chars = sum(1 for c in TEXT if not c.isspace())
    print(f"speech: {stats.duration_s:.1f} s for {chars} Thai characters, RMS {stats.rms:.3f} of full scale")
    assert stats.rms > speech.MIN_RMS and 0.02 * chars < stats.duration_s < 0.4 * chars
    assert speech.check_speech(out.read_bytes(), TEXT) is None


def test_silent_short_long_and_broken_files_are_refused():
    assert speech.check_speech(_wav(5.0, 0.3), TEXT) is None
    assert speech.check_speech(_wav(5.0, 0.0), TEXT).startswith("silent")
    assert speech.check_speech(_wav(5.0, 0.002), TEXT).startswith("silent")
    assert "expected" in speech.check_speech(_wav(0.3, 0.3), TEXT)
    assert "expected" in speech.check_speech(_wav(60.0, 0.3), TEXT)
    assert speech.check_speech(b"RIFF....not a wave", TEXT).startswith("not a WAV")


def test_without_espeak_the_text_is_for_the_announcer(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on this PATH
    out = tmp_path / "announcement.wav"
    note = speech.speak_thai(TEXT, out)
    assert note == "espeak-ng is not installed: the text is for the announcer to read" and not out.exists()


@pytest.mark.parametrize("seconds", [0.0])
def test_an_empty_wav_is_silent(seconds):
    assert speech.check_speech(_wav(seconds, 0.5), TEXT).startswith("silent")
