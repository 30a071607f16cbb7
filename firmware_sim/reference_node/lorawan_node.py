"""floodwatch reference node over LoRaWAN: MicroPython for an ESP32 + RAK3172 modem (untested here; a starting point).

Hardware as main.py (JSN-SR04T on GPIO 5/18, tipping bucket on GPIO 27,
battery divider on GPIO 34), plus a RAK3172 LoRaWAN module (RUI3 AT firmware)
on UART 2 (TX GPIO 17, RX GPIO 16). Set DEV_EUI / APP_EUI / APP_KEY from the
network server (ChirpStack or The Things Stack), and map DEV_EUI to the
station under [lorawan] devices in the site's TOML file.

Each reading leaves as one uplink on fPort 1 in the reference layout
(uplink.py, documented in uplink-layout.md): boot counter, distance or tips,
battery, and the reading's age when it is sent late. The network server runs
codec.js and publishes the uplink; floodwatch reads it from the server's MQTT
topic. There is no seq and no clock: the frame counter and the server's
reception time stand in for them. Readings that could not be sent (no
network, a duty-cycle wait) stay in a small buffer and go out oldest first,
each with its age.
"""

import time

import machine

import uplink

DEV_EUI = "70B3D57ED0001A03"
APP_EUI = "0000000000000001"
APP_KEY = "00000000000000000000000000000000"  # from the network server; never commit the real one
BAND = 8  # RUI3 band 8: AS923-1 (Thailand: 920-925 MHz)
PUBLISH_INTERVAL_S = 600
FAST_INTERVAL_S = 120
FAST_RISE_M_PER_H = 0.35
BURST = 5
BUFFER_MAX = 60  # readings kept while the network is away (RAM); older ones are dropped
MAX_AGE_S = 65535  # the layout's age field: older readings are dropped, not sent wrong

modem = machine.UART(2, baudrate=115200, tx=17, rx=16, timeout=2000)
trig = machine.Pin(5, machine.Pin.OUT, value=0)
echo = machine.Pin(18, machine.Pin.IN)
bucket = machine.Pin(27, machine.Pin.IN, machine.Pin.PULL_UP)
battery_adc = machine.ADC(machine.Pin(34))
battery_adc.atten(machine.ADC.ATTN_11DB)

tips = 0
_last_tip_ms = 0


def _on_tip(pin):
    global tips, _last_tip_ms
    now = time.ticks_ms()
    if time.ticks_diff(now, _last_tip_ms) > 50:  # reed switch bounce
        tips += 1
        _last_tip_ms = now


bucket.irq(trigger=machine.Pin.IRQ_FALLING, handler=_on_tip)


def at(command, wait_s=2, expect="OK"):
    """One AT command; True when the modem answered ``expect``."""
    modem.write(command + "\r\n")
    deadline = time.ticks_add(time.ticks_ms(), int(wait_s * 1000))
    answer = b""
    while time.ticks_diff(deadline, time.ticks_ms()) > 0:
        chunk = modem.read()
        if chunk:
            answer += chunk
            if expect.encode() in answer or b"ERROR" in answer or b"AT_" in answer:
                break
        time.sleep_ms(20)
    return expect.encode() in answer


def join():
    at("AT+NWM=1")  # LoRaWAN mode
    at("AT+NJM=1")  # OTAA: a new session (device address, keys, frame counter 0) at every join
    at("AT+BAND=%d" % BAND)
    at("AT+DEVEUI=" + DEV_EUI)
    at("AT+APPEUI=" + APP_EUI)
    at("AT+APPKEY=" + APP_KEY)
    at("AT+CFM=0")  # unconfirmed uplinks: the frame counter, not an ack, orders them
    return at("AT+JOIN=1:0:10:8", wait_s=60, expect="+EVT:JOINED")


def next_boot_count():
    try:
        with open("boot.txt") as f:
            boot = int(f.read()) + 1
    except (OSError, ValueError):
        boot = 1
    with open("boot.txt", "w") as f:
        f.write(str(boot))
    return boot


def distance_m():
    pings = []
    for _ in range(BURST):
        trig.value(1)
        time.sleep_us(20)
        trig.value(0)
        echo_us = machine.time_pulse_us(echo, 1, 40000)
        if echo_us > 0:
            d = echo_us * 1e-6 * 349.0 / 2
            if 0.25 <= d <= 7.5:
                pings.append(d)
        time.sleep_ms(60)
    if not pings:
        return None
    pings.sort()
    return round(pings[len(pings) // 2], 3)


def battery_v():
    return round(battery_adc.read_uv() * 2 / 1e6, 3)


def send(reading, age_s):
    payload = uplink.encode(uplink.quantize(reading, age_s=age_s))
    return at("AT+SEND=%d:%s" % (uplink.F_PORT, payload.hex().upper()), wait_s=10, expect="+EVT:TX_DONE")


def main():
    boot = next_boot_count()
    joined = join()
    buffer = []  # type: list[tuple[int, dict]]  # (ticks_ms when taken, reading)
    last_distance_m = None
    interval_s = PUBLISH_INTERVAL_S
    while True:
        woke = time.ticks_ms()
        reading = {"boot": boot, "rain_tips": tips, "battery_v": battery_v()}
        d = distance_m()
        if d is not None:
            reading["distance_m"] = d
        if len(buffer) >= BUFFER_MAX:
            buffer.pop(0)
        buffer.append((woke, reading))
        if not joined:
            joined = join()
        while joined and buffer:
            taken, oldest = buffer[0]
            age_s = time.ticks_diff(time.ticks_ms(), taken) // 1000
            if age_s > MAX_AGE_S:
                buffer.pop(0)
                continue
            if not send(oldest, age_s):
                break  # duty cycle or no gateway: try again at the next wake
            buffer.pop(0)
        previous_interval_s = interval_s
        interval_s = PUBLISH_INTERVAL_S
        if d is not None:
            rise_m_per_h = None if last_distance_m is None else (last_distance_m - d) * 3600 / previous_interval_s
            if rise_m_per_h is not None and rise_m_per_h > FAST_RISE_M_PER_H:
                interval_s = FAST_INTERVAL_S
            last_distance_m = d
        machine.lightsleep(max(1, interval_s - time.ticks_diff(time.ticks_ms(), woke) // 1000) * 1000)


main()
