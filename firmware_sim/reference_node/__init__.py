"""The reference node's firmware: MicroPython files copied onto the board as they are.

``main.py`` is the Wi-Fi/cellular MQTT node; ``lorawan_node.py`` the LoRaWAN one;
``uplink.py`` the binary uplink layout both the LoRaWAN node and the simulator
encode (documented byte by byte in ``uplink-layout.md``); ``codec.js`` the payload
codec a LoRaWAN network server runs to decode it (ChirpStack v4 ``decodeUplink``,
The Things Stack v3 uplink formatter).
"""
