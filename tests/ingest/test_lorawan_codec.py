"""The JavaScript codec network servers run agrees with floodwatch's own decoder, byte for byte.

``codec.js`` runs under the real Node.js, evaluated as plain script text the way
both servers evaluate it (no module system): once as ChirpStack v4 calls it
(``decodeUplink`` with ``bytes``, ``fPort``, ``recvTime``, ``variables``) and once
through The Things Stack v3's wrapper (``main(input)`` copying the bytes and
passing ``{bytes, fPort}``). The bytes come from the reference node's encoder
(``firmware_sim/reference_node/uplink.py``); the Python decoder
(``ingest.lorawan.decode_reference_payload``) reads the same bytes.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from floodwatch.errors import PayloadError
from floodwatch.firmware_sim.reference_node import uplink
from floodwatch.ingest.lorawan import decode_reference_payload

CODEC = Path(uplink.__file__).with_name("codec.js")

HARNESS = r"""
const fs = require("fs");
const vm = require("vm");
const code = fs.readFileSync(process.argv[2], "utf8");
const cases = JSON.parse(fs.readFileSync(0, "utf8"));
// ChirpStack v4: the codec text, then `decodeUplink(chirpstack_input)`, in a fresh context.
const chirpstack = (bytes) => vm.runInNewContext(code + "\n\ndecodeUplink(chirpstack_input)", {
  chirpstack_input: { bytes: bytes, fPort: 1, recvTime: new Date(), variables: {} } });
// The Things Stack v3: its wrapper around the codec text (pkg/messageprocessors/javascript).
const tts = (bytes) => vm.runInNewContext(code + `
  function main(input) {
    const bytes = input.bytes.slice();
    const { fPort } = input;
    return { decoded: decodeUplink({ bytes, fPort }) };
  }
  main(tts_input)`, { tts_input: { bytes: bytes, fPort: 1 } }).decoded;
process.stdout.write(JSON.stringify(cases.map((b) => ({ chirpstack: chirpstack(b), tts: tts(b) }))));
"""


def run_codec(cases: list[bytes], tmp_path: Path) -> list[dict]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed; the JS codec must be tested for real (apt-get install nodejs)")
    harness = tmp_path / "harness.js"
    harness.write_text(HARNESS)
    out = subprocess.run([node, str(harness), str(CODEC)], input=json.dumps([list(b) for b in cases]),
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def readings(n: int, seed: int = 15) -> list[tuple[dict, int, int]]:
    """Readings as the reference node makes them: level (raw or converted) and rain, some sent late."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = i % 4
        r: dict = {}
        if kind == 0:
            r["distance_m"] = round(rng.uniform(0.0, 65.5), 3)
        elif kind == 1:
            r["water_level_m"] = round(rng.uniform(-32.7, 32.7), 3)
        elif kind == 2:
            r["rain_tips"] = rng.choice([0, 1, 25, 65535, 65536, rng.randrange(0, 2**24)])
        if rng.random() < 0.9:
            r["battery_v"] = round(rng.uniform(2.8, 14.4), 3)
        boot = rng.choice([0, 1, 3, 65535, 65536 + 7])
        age = rng.choice([0, 0, 0, 1, 600, 65535])
        out.append((r, boot, age))
    return out


def test_js_codec_and_python_decoder_agree_on_every_uplink_the_node_sends(tmp_path):
    cases = readings(400)
    sent = [uplink.quantize(r, boot=boot, age_s=age) for r, boot, age in cases]
    payloads = [uplink.encode(v) for v in sent]
    assert all(4 <= len(p) <= 14 for p in payloads)
    js = run_codec(payloads, tmp_path)
    for values, data, result in zip(sent, payloads, js, strict=True):
        py = decode_reference_payload(data)
        assert result["chirpstack"]["errors"] == [] and result["tts"]["errors"] == []
        assert result["chirpstack"]["data"] == py == values, data.hex()
        assert result["tts"]["data"] == py
    print(f"codec: {len(payloads)} uplinks, 8-14 bytes, JS (ChirpStack and TTS wrappers) == Python == sent")


def test_js_codec_and_python_decoder_refuse_the_same_bad_payloads(tmp_path):
    good = uplink.encode(uplink.quantize({"distance_m": 2.781, "battery_v": 3.18}, boot=3))
    bad = [b"", good[:3], bytes([2]) + good[1:], good[:1] + bytes([0x29]) + good[2:], good + b"\x00", good[:-1]]
    js = run_codec(bad, tmp_path)
    for data, result in zip(bad, js, strict=True):
        with pytest.raises(PayloadError) as exc:
            decode_reference_payload(data)
        assert exc.value.reason == "undecodable"
        assert result["chirpstack"]["errors"], data.hex()
        assert result["tts"]["errors"], data.hex()
        assert "data" not in result["chirpstack"]


def test_encoder_refuses_values_the_layout_cannot_hold():
    for reading, age in (({"distance_m": 70.0}, 0), ({"water_level_m": -40.0}, 0), ({"rain_tips": 2**24}, 0),
                         ({"distance_m": 1.0}, 70_000)):
        with pytest.raises(ValueError):
            uplink.quantize(reading, boot=1, age_s=age)
