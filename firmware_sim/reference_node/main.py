"""floodwatch reference node: MicroPython for an ESP32 (untested here; a starting point).

Hardware: an ESP32 dev board, a JSN-SR04T waterproof ultrasonic sensor
(TRIG on GPIO 5, ECHO on GPIO 18 through a divider to 3.3 V) looking down at
the water, a tipping-bucket rain gauge (reed switch between GPIO 27 and GND),
the battery through a 1:2 divider on GPIO 34, a 2 W solar panel and charger.
Set STATION_ID, Wi-Fi and the broker below. The node sends the raw
distance; ingestion converts it with the registry's mount_height_m.

It publishes the contract in docs/mqtt-contract.md: QoS 1 JSON to
floodwatch/{station}/telemetry with ts, seq, boot, distance_m, rain_tips,
battery_v and rssi_dbm; a retained `online` and a last will `offline` on
floodwatch/{station}/status; a ring buffer flushed oldest first as
{"readings": [...]} batches when the broker is back.
"""

import json
import time

import machine
import network
import ntptime
from umqtt.simple import MQTTClient

STATION_ID = "LP-W03"
WIFI_SSID, WIFI_PASSWORD = "lamphaya-net", "change-me"
BROKER_HOST, BROKER_PORT = "192.168.1.10", 1883
PUBLISH_INTERVAL_S = 600
FAST_INTERVAL_S = 120
FAST_RISE_M_PER_H = 0.35
BURST = 5
BUFFER_MAX = 300  # readings kept while the broker is unreachable (RAM)
BATCH_MAX = 50
SYNC_INTERVAL_S = 6 * 3600
UNIX_EPOCH_OFFSET_S = 946684800  # the ESP32 port counts from 2000-01-01

TELEMETRY = "floodwatch/%s/telemetry" % STATION_ID
STATUS = "floodwatch/%s/status" % STATION_ID

trig = machine.Pin(5, machine.Pin.OUT, value=0)
echo = machine.Pin(18, machine.Pin.IN)
bucket = machine.Pin(27, machine.Pin.IN, machine.Pin.PULL_UP)
battery_adc = machine.ADC(machine.Pin(34))
battery_adc.atten(machine.ADC.ATTN_11DB)

tips = 0
_last_tip_ms = 0


def _on_tip(pin):
    # The reed switch bounces; a real tip is at least 50 ms after the last.
    global tips, _last_tip_ms
    now = time.ticks_ms()
    if time.ticks_diff(now, _last_tip_ms) > 50:
        tips += 1
        _last_tip_ms = now


bucket.irq(trigger=machine.Pin.IRQ_FALLING, handler=_on_tip)


def next_boot_count():
    """The boot counter lives in flash so it survives power loss."""
    try:
        with open("boot.txt") as f:
            boot = int(f.read()) + 1
    except (OSError, ValueError):
        boot = 1
    with open("boot.txt", "w") as f:
        f.write(str(boot))
    return boot


def ping_m():
    """One JSN-SR04T ping: distance in metres, or None (no echo: blind zone or out of range)."""
    trig.value(1)
    time.sleep_us(20)
    trig.value(0)
    echo_us = machine.time_pulse_us(echo, 1, 40000)
    if echo_us < 0:
        return None
    # Speed of sound at the air temperature; 30 C is typical on a Lam Phaya afternoon.
    return echo_us * 1e-6 * 349.0 / 2


def distance_m():
    pings = []
    for _ in range(BURST):
        d = ping_m()
        if d is not None and 0.25 <= d <= 7.5:
            pings.append(d)
        time.sleep_ms(60)
    if not pings:
        return None
    pings.sort()
    return round(pings[len(pings) // 2], 3)


def battery_v():
    return round(battery_adc.read_uv() * 2 / 1e6, 3)


def connect_wifi(wlan, timeout_s=20):
    if wlan.isconnected():
        return True
    wlan.connect(WIFI_SSID, WIFI_PASSWORD)
    start = time.time()
    while not wlan.isconnected() and time.time() - start < timeout_s:
        time.sleep(1)
    return wlan.isconnected()


def connect_mqtt():
    client = MQTTClient("fw-node-" + STATION_ID, BROKER_HOST, BROKER_PORT, keepalive=PUBLISH_INTERVAL_S * 2)
    client.set_last_will(STATUS, b"offline", retain=True, qos=1)
    client.connect()
    client.publish(STATUS, b"online", retain=True, qos=1)
    return client


def main():
    boot = next_boot_count()
    seq = 0
    buffer = []  # type: list[dict]
    dropped = 0
    last_distance_m = None
    interval_s = PUBLISH_INTERVAL_S
    last_sync_s = -SYNC_INTERVAL_S  # type: float
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    client = None
    while True:
        woke_s = time.time()
        if connect_wifi(wlan) and woke_s - last_sync_s >= SYNC_INTERVAL_S:
            try:
                ntptime.settime()
                last_sync_s = time.time()
            except OSError:
                pass
        reading = {"ts": time.time() + UNIX_EPOCH_OFFSET_S, "seq": seq, "boot": boot,
                   "rain_tips": tips, "battery_v": battery_v()}
        d = distance_m()
        if d is not None:
            reading["distance_m"] = d
        if wlan.isconnected():
            reading["rssi_dbm"] = wlan.status("rssi")
        seq += 1
        if len(buffer) >= BUFFER_MAX:
            buffer.pop(0)
            dropped += 1
        buffer.append(reading)
        # Send the buffer oldest first; the new reading is its last element.
        try:
            if client is None:
                client = connect_mqtt()
            while buffer:
                batch = buffer[:BATCH_MAX]
                body = batch[0] if len(batch) == 1 else {"readings": batch}
                client.publish(TELEMETRY, json.dumps(body), qos=1)
                del buffer[:len(batch)]
        except OSError:
            client = None  # keep the buffer; try again at the next wake
        previous_interval_s = interval_s
        interval_s = PUBLISH_INTERVAL_S
        if d is not None:
            # The sensor measures the distance down to the water: a rise shortens it.
            rise_m_per_h = None if last_distance_m is None else (last_distance_m - d) * 3600 / previous_interval_s
            if rise_m_per_h is not None and rise_m_per_h > FAST_RISE_M_PER_H:
                interval_s = FAST_INTERVAL_S
            last_distance_m = d
        machine.lightsleep(max(1, interval_s - (time.time() - woke_s)) * 1000)


main()
