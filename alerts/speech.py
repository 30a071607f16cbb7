"""A spoken Thai message for the village loudspeakers, made offline with espeak-ng, and checked.

espeak-ng (Debian package ``espeak-ng``) has a Thai voice and needs no
network. Where it is missing the loudspeaker command carries the text for
the announcer to read instead, and the log says so once. Every WAV made is
checked before it is offered to a controller: it must decode, be loud enough
(RMS above :data:`MIN_RMS` of full scale: a silent file would play as
nothing) and last about as long as the text takes to say.
"""

from __future__ import annotations

import array
import io
import logging
import math
import shutil
import subprocess
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("floodwatch.alerts.speech")

MIN_RMS = 0.01            # of full scale; espeak-ng's Thai speech measures about 0.1
SECONDS_PER_CHAR = (0.02, 0.4)  # plausible speaking time per non-space character, min and max
TIMEOUT_S = 30.0
_warned_missing = False


@dataclass(frozen=True, slots=True)
class WavStats:
    duration_s: float
    rms: float               # root mean square of the samples, as a fraction of full scale
    sample_rate: int
    channels: int


def wav_stats(data: bytes) -> WavStats:
    """Duration and loudness of a 16-bit PCM WAV.

    Raises
    ------
    ValueError
        When the bytes are not a 16-bit PCM WAV.
    """
    try:
        with wave.open(io.BytesIO(data)) as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"expected 16-bit samples, got {8 * w.getsampwidth()}-bit")
            frames = w.readframes(w.getnframes())
            rate, channels, n = w.getframerate(), w.getnchannels(), w.getnframes()
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"not a WAV file: {exc}") from exc
    samples = array.array("h", frames[: len(frames) // 2 * 2])
    if sys.byteorder == "big":
        samples.byteswap()
    rms = math.sqrt(sum(s * s for s in samples) / len(samples)) / 32768.0 if samples else 0.0
    # the samples actually present, not the header's count (a streamed WAV's header says "unknown")
    frames_present = min(n, len(samples) // max(1, channels))
    return WavStats(frames_present / rate if rate else 0.0, rms, rate, channels)


def check_speech(data: bytes, text: str) -> str | None:
    """Why this WAV is not a usable reading of ``text`` (silent, too short or long), or None when it is."""
    try:
        stats = wav_stats(data)
    except ValueError as exc:
        return str(exc)
    if stats.rms < MIN_RMS:
        return f"silent (RMS {stats.rms:.4f} of full scale, below {MIN_RMS})"
    chars = sum(1 for c in text if not c.isspace())
    low, high = SECONDS_PER_CHAR[0] * chars, SECONDS_PER_CHAR[1] * chars + 1.0
    if not low <= stats.duration_s <= high:
        return f"{stats.duration_s:.1f} s for {chars} characters (expected {low:.1f}-{high:.1f} s)"
    return None


def espeak() -> str | None:
    return shutil.which("espeak-ng")


def speak_thai(text: str, out_path: Path) -> str | None:
    """Write ``text`` spoken by espeak-ng's Thai voice to ``out_path``; returns why not, or None when written.

    The file is written only when :func:`check_speech` accepts it.
    """
    global _warned_missing
    program = espeak()
    if program is None:
        if not _warned_missing:
            log.warning("event=speech_unavailable fix=%s", "apt-get install espeak-ng for spoken Thai loudspeaker "
                        "messages; until then commands carry the text for the announcer")
            _warned_missing = True
        return "espeak-ng is not installed: the text is for the announcer to read"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".part.wav")
    try:
        done = subprocess.run([program, "-v", "th", "-s", "140", "-w", str(tmp), text], capture_output=True,
                              timeout=TIMEOUT_S, check=False)
        if done.returncode != 0:
            return f"espeak-ng failed ({done.returncode}): {done.stderr.decode(errors='replace')[:200]}"
        problem = check_speech(tmp.read_bytes(), text)
        if problem is not None:
            log.error("event=speech_rejected problem=%r", problem)
            return f"the spoken file was not usable: {problem}"
        tmp.replace(out_path)
        return None
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"espeak-ng failed: {exc}"
    finally:
        tmp.unlink(missing_ok=True)
