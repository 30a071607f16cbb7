// floodwatch reference node: LoRaWAN uplink codec, layout version 1.
//
// Paste this file as the payload codec of the device profile (ChirpStack v4:
// Device profiles > Codec > JavaScript functions) or as the uplink payload
// formatter (The Things Stack v3: Application or device > Payload formatters >
// Uplink > Custom Javascript formatter). Both call decodeUplink(input) with
// input.bytes (array of 0..255) and input.fPort, and take { data, warnings, errors }.
//
// The layout, byte by byte, is in firmware_sim/reference_node/uplink-layout.md;
// data uses the names of floodwatch's MQTT contract (docs/mqtt-contract.md), so
// floodwatch ingests the decoded object as it is. Written in ES5 so every codec
// engine runs it (QuickJS in ChirpStack, goja in The Things Stack).

var FLOODWATCH_LAYOUT_VERSION = 1;

function decodeUplink(input) {
  var bytes = input.bytes;
  if (!bytes || bytes.length < 4) {
    return { errors: ["payload is " + (bytes ? bytes.length : 0) + " bytes; floodwatch layout 1 needs at least 4"] };
  }
  if (bytes[0] !== FLOODWATCH_LAYOUT_VERSION) {
    return { errors: ["layout version " + bytes[0] + " is not 1; update the codec"] };
  }
  var flags = bytes[1];
  if (flags & 0xE0) {
    return { errors: ["reserved flag bits set (0x" + flags.toString(16) + "); update the codec"] };
  }
  var expected = 4;
  if (flags & 0x01) { expected += 2; }
  if (flags & 0x02) { expected += 2; }
  if (flags & 0x04) { expected += 3; }
  if (flags & 0x08) { expected += 2; }
  if (flags & 0x10) { expected += 2; }
  if (bytes.length !== expected) {
    return { errors: ["payload is " + bytes.length + " bytes but its flags say " + expected] };
  }
  var data = { boot: (bytes[2] << 8) | bytes[3] };
  var i = 4;
  function u16() { var v = (bytes[i] << 8) | bytes[i + 1]; i += 2; return v; }
  if (flags & 0x01) { data.distance_m = u16() / 1000; }
  if (flags & 0x02) { var w = u16(); if (w > 0x7FFF) { w -= 0x10000; } data.water_level_m = w / 1000; }
  if (flags & 0x04) { data.rain_tips = bytes[i] * 65536 + ((bytes[i + 1] << 8) | bytes[i + 2]); i += 3; }
  if (flags & 0x08) { data.battery_v = u16() / 1000; }
  if (flags & 0x10) { data.age_s = u16(); }
  return { data: data, warnings: [], errors: [] };
}

// For tests under Node.js; the network servers ignore this.
if (typeof module !== "undefined" && module.exports) {
  module.exports = { decodeUplink: decodeUplink };
}
