"""Nodes behind a LoRaWAN network server: each reading leaves as the server would publish it.

A LoRaWAN node sends the reference layout (``reference_node/uplink.py``) over
the air; the network server decodes it with ``reference_node/codec.js`` and
publishes an uplink event on MQTT. :class:`LorawanUplinker` plays that server
for one node: frame counter, session (a new one at every reboot, as a node
rejoins), reception time, gateway RSSI, and the event JSON in ChirpStack v4's
or The Things Stack v3's shape (``tests/ingest/lorawan_fixtures/`` holds the
recorded shapes this follows). With ``codec=False`` the event carries only the
bytes, as from a device profile without a codec.
"""

from __future__ import annotations

import base64
import random
import uuid
from datetime import datetime, UTC

from floodwatch.firmware_sim.reference_node import uplink as layout

CHIRPSTACK = "chirpstack"
TTS = "tts"
SERVERS = (CHIRPSTACK, TTS)
APPLICATION_ID = "17c82e96-be03-4f38-aef3-f83d48582d97"  # ChirpStack names applications by UUID
TTS_APPLICATION = "floodwatch"
TTS_TENANT = "ttn"
# The broker account a network server (or the bridge from it) publishes uplinks as
# (written by `floodwatch mqtt-config`, may write only the uplink topics).
LORAWAN_USER = "floodwatch-lorawan"


def _hex_device(key: str) -> bool:
    return len(key) == 16 and all(c in "0123456789abcdef" for c in key)


def device_for(settings, station_id: str, server: str) -> str:
    """The device a station's node is registered as (``[lorawan] devices`` in the site file).

    Raises ValueError naming the fix when the station has no device, or ChirpStack needs a DevEUI.
    """
    keys = [k for k, sid in settings.lorawan.devices.items() if sid == station_id]
    if not keys:
        raise ValueError(f"station {station_id} has no LoRaWAN device; add its DevEUI under [lorawan] devices "
                         f"in {settings.config_file}")
    if server == CHIRPSTACK:
        euis = [k for k in keys if _hex_device(k)]
        if not euis:
            raise ValueError(f"ChirpStack names devices by DevEUI; map a 16-hex-digit DevEUI to {station_id}")
        return euis[0]
    return keys[0]


def rfc3339_nanos(ts_s: float, suffix: str = "+00:00") -> str:
    """``2026-11-29T07:05:00.775023242+00:00``: both servers print nanoseconds."""
    whole = int(ts_s // 1)
    nanos = int(round((ts_s - whole) * 1e9))
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    return datetime.fromtimestamp(whole, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}{suffix}"


class LorawanUplinker:
    """The network server's side of one node: turns contract readings into uplink events.

    Parameters
    ----------
    server : "chirpstack" or "tts"
    device : str
        DevEUI (ChirpStack; also sent by TTS) or TTS device id.
    codec : bool
        Include the decoded object, as a server with the codec installed does.
    seed : int
    """

    def __init__(self, server: str, device: str, *, codec: bool = True, seed: int = 0) -> None:
        if server not in SERVERS:
            raise ValueError(f"server must be one of {', '.join(SERVERS)}, got {server!r}")
        self.server = server
        self.device = device
        self.codec = codec
        self.rng = random.Random(seed)
        self.dev_eui = device if _hex_device(device) else f"70b3d57ed0{self.rng.getrandbits(24):06x}"
        self.device_id = device if server == TTS and not _hex_device(device) else f"eui-{self.dev_eui}"
        self.boot: int | None = None
        self.f_cnt = 0
        self.session = ""
        self.dev_addr = ""
        self.last_payload: bytes | None = None
        self._join()

    @property
    def topic(self) -> str:
        if self.server == CHIRPSTACK:
            return f"application/{APPLICATION_ID}/device/{self.dev_eui}/event/up"
        return f"v3/{TTS_APPLICATION}@{TTS_TENANT}/devices/{self.device_id}/up"

    def _join(self) -> None:
        """A (re)join: a new device address and session, the frame counter from 0."""
        self.dev_addr = f"{self.rng.getrandbits(32):08x}"
        self.session = base64.b64encode(self.rng.getrandbits(128).to_bytes(16, "big")).decode()
        self.f_cnt = 0

    def uplink(self, reading: dict, received_s: float, age_s: float = 0.0) -> bytes:
        """The event JSON for one reading received at ``received_s`` (UTC epoch s), taken ``age_s`` earlier."""
        import json

        boot = int(reading.get("boot", 0))
        if self.boot is not None and boot != self.boot:
            self._join()  # the node rebooted: it joins again
        self.boot = boot
        values = layout.quantize(reading, boot=boot, age_s=age_s)
        data = layout.encode(values)
        rssi = float(reading.get("rssi_dbm", -100.0))
        if self.server == CHIRPSTACK:
            body = self._chirpstack(values, data, received_s, rssi)
        else:
            body = self._tts(values, data, received_s, rssi)
        self.f_cnt += 1
        self.last_payload = json.dumps(body, separators=(",", ":")).encode()
        return self.last_payload

    def _chirpstack(self, values: dict, data: bytes, received_s: float, rssi: float) -> dict:
        body: dict = {
            "deduplicationId": str(uuid.UUID(int=self.rng.getrandbits(128))),
            "time": rfc3339_nanos(received_s),
            "deviceInfo": {
                "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
                "tenantName": "floodwatch simulator",
                "applicationId": APPLICATION_ID,
                "applicationName": "floodwatch",
                "deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad",
                "deviceProfileName": "floodwatch reference node (AS923)",
                "deviceName": self.device_id,
                "devEui": self.dev_eui,
            },
            "devAddr": self.dev_addr,
            "adr": True,
            "dr": 2,
            "fPort": layout.F_PORT,
            "data": base64.b64encode(data).decode(),
            "rxInfo": [{"gatewayId": "0016c001f153a14c", "uplinkId": self.rng.getrandbits(16),
                        "nsTime": rfc3339_nanos(received_s - 0.002), "rssi": int(round(rssi)),
                        "snr": 7.5, "channel": 2, "crcStatus": "CRC_OK"}],
            "txInfo": {"frequency": 923200000,
                       "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 9, "codeRate": "CR_4_5"}}},
        }
        if self.f_cnt:  # protobuf's JSON mapping leaves zero values out
            body["fCnt"] = self.f_cnt
        if self.codec:
            # A codec's output crosses a protobuf Struct: every number is a double.
            body["object"] = {k: float(v) for k, v in values.items()}
        return body

    def _tts(self, values: dict, data: bytes, received_s: float, rssi: float) -> dict:
        up: dict = {
            "session_key_id": self.session,
            "f_port": layout.F_PORT,
            "frm_payload": base64.b64encode(data).decode(),
            "rx_metadata": [{"gateway_ids": {"gateway_id": "lamphaya-office", "eui": "AA555A0000000101"},
                             "rssi": int(round(rssi)), "channel_rssi": int(round(rssi)), "snr": 7.2,
                             "received_at": rfc3339_nanos(received_s - 0.05, "Z")}],
            "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 9, "coding_rate": "4/5"}},
                         "frequency": "923200000"},
            "received_at": rfc3339_nanos(received_s - 0.02, "Z"),
            "consumed_airtime": "0.205824s",
            "network_ids": {"net_id": "000013", "tenant_id": TTS_TENANT, "cluster_id": "as1"},
        }
        if self.f_cnt:  # empty fields are omitted
            up["f_cnt"] = self.f_cnt
        if self.codec:
            up["decoded_payload"] = dict(values)
            up["decoded_payload_warnings"] = []
        return {
            "end_device_ids": {"device_id": self.device_id, "application_ids": {"application_id": TTS_APPLICATION},
                               "dev_eui": self.dev_eui.upper(), "join_eui": "0000000000000001",
                               "dev_addr": self.dev_addr.upper()},
            "correlation_ids": [f"as:up:{self.rng.getrandbits(64):016X}"],
            "received_at": rfc3339_nanos(received_s, "Z"),
            "uplink_message": up,
        }
