/* floodwatch live gauge page.
 *
 * Everything comes from the page's own JSON API (/api/...) and live
 * server-sent events (/api/events); no request leaves the server's origin,
 * so the page keeps working when the control room loses the internet.
 * EventSource reconnects by itself after a network drop; on every (re)open
 * the page refetches, so nothing missed while away stays missing.
 */
"use strict";

const VIEW = document.body.dataset.view || "officer";
const OFFICER_VIEW = VIEW === "officer";

const I18N = {
  th: {
    title: "ระดับน้ำ", offline: "ออฟไลน์", live: "สด", login: "เข้าสู่ระบบ", logout: "ออกจากระบบ",
    nav_overview: "ภาพรวม", nav_map: "แผนที่", nav_alerts: "การแจ้งเตือน", nav_health: "สถานะสถานี",
    nav_officer: "เจ้าหน้าที่", nav_public: "หน้าสาธารณะ",
    overview: "ทุกสถานี เรียงตามความเสี่ยง", map: "แผนที่ (แผนผังออฟไลน์)", alerts: "บันทึกการแจ้งเตือน",
    health: "สถานะสถานี", officer: "งานเจ้าหน้าที่",
    col_station: "สถานี", col_level: "ระดับน้ำ (ม.รทก.)", col_trend: "แนวโน้ม", col_forecast: "คาดการณ์สูงสุด",
    col_age: "ข้อมูลเมื่อ", col_qc: "คุณภาพ", col_time: "เวลา", col_zone: "พื้นที่", col_alert: "ระดับ / ประเภท",
    col_recipients: "ผู้รับ", col_delivery: "สถานะการส่ง", col_last_seen: "ล่าสุด", col_battery: "แบตเตอรี่",
    col_signal: "สัญญาณ", col_status: "การเชื่อมต่อ", col_who: "ผู้ใช้", col_action: "การกระทำ", col_target: "เป้าหมาย",
    lvl_0: "ปกติ", lvl_1: "เฝ้าระวัง", lvl_2: "เตือนภัย", lvl_3: "อพยพ", stale: "ข้อมูลเก่า",
    rising: "สูงขึ้น", falling: "ลดลง", steady: "คงที่", unknown: "ไม่ทราบ",
    cm_per_h: "ซม./ชม.", mm_1h: "มม./ชม.", rain_gauge: "มาตรวัดฝน", no_data: "ไม่มีข้อมูล", no_forecast: "—",
    ago: "ที่แล้ว", s: "วินาที", min: "นาที", h: "ชม.", d: "วัน",
    qc_pass: "ผ่าน", qc_suspect: "น่าสงสัย", qc_fail: "ไม่ผ่าน", qc_missing: "ขาดหาย", qc_not_evaluated: "ยังไม่ตรวจ",
    online: "ออนไลน์", offline_since: "ออฟไลน์ตั้งแต่", silent: "เงียบ", unknown_status: "ไม่ทราบ",
    maintenance: "ซ่อมบำรุง", maint_on: "ตั้งเป็นซ่อมบำรุง", maint_off: "เลิกซ่อมบำรุง",
    not_running: "ไม่ได้ทำงาน", alerts_not_running: "ระบบแจ้งเตือนไม่ได้ทำงานในโปรเซสนี้",
    no_alerts: "ยังไม่มีการแจ้งเตือน", acknowledge: "รับทราบ", acknowledged: "รับทราบแล้ว",
    zoom_reset: "รีเซ็ตการซูม", chart_hint: "ลากบนกราฟเพื่อซูม · ดับเบิลคลิกเพื่อรีเซ็ต",
    map_note: "แผนผังโดยประมาณ ไม่ต้องใช้อินเทอร์เน็ต", public_note: "ข้อมูลจากเทศบาล อ่านอย่างเดียว",
    manual_message: "ส่งข้อความถึงประชาชน", choose_zones: "เลือกพื้นที่", text_th: "ข้อความภาษาไทย",
    text_en: "ข้อความภาษาอังกฤษ", preview: "ดูตัวอย่าง", preview_title: "ตัวอย่างข้อความ",
    confirm_send: "ยืนยันการส่ง", cancel: "ยกเลิก", recipients: "ผู้รับ", residents: "คน",
    sent: "ส่งแล้ว", test_alert: "ทดสอบการแจ้งเตือน (ส่งถึงเจ้าหน้าที่เท่านั้น)", send_test: "ส่งข้อความทดสอบ",
    audit: "บันทึกการใช้งาน", username: "ชื่อผู้ใช้", password: "รหัสผ่าน", login_failed: "ชื่อผู้ใช้หรือรหัสผ่านไม่ถูกต้อง",
    observed: "ระดับน้ำที่วัดได้", flagged: "จุดที่ไม่ผ่าน QC", forecast_median: "คาดการณ์ (ค่ากลาง)",
    band_low: "ขอบล่าง", band_high: "ขอบบน", rain: "ฝน (มม.)", watch_line: "เฝ้าระวัง", warning_line: "เตือนภัย",
    evacuate_line: "อพยพ", peak: "สูงสุด", at: "เวลา", level_now: "ระดับล่าสุด", rate: "อัตรา",
    forecast_issued: "ออกคาดการณ์", services: "บริการ", ingest: "รับข้อมูล", forecaster: "คาดการณ์",
    alert_service: "แจ้งเตือน", running: "ทำงาน", zone_level: "ระดับของพื้นที่", officers_only: "เจ้าหน้าที่", stored: "บันทึก", rejected: "ปฏิเสธ", now: "ตอนนี้",
    dl_pending: "รอส่ง", dl_sending: "กำลังส่ง", dl_delivered: "ส่งถึงแล้ว", dl_partial: "ส่งได้บางส่วน", dl_failed: "ส่งไม่สำเร็จ",
    dl_no_recipients: "ไม่มีผู้รับ", dl_superseded: "ถูกแทนที่", kind_escalate: "ระดับสูงขึ้น", kind_forecast: "คาดการณ์", kind_rise: "น้ำขึ้นเร็ว",
    kind_reminder: "เตือนซ้ำ", kind_deescalate: "ระดับลดลง", kind_all_clear: "กลับสู่ปกติ", kind_low_water: "น้ำต่ำ",
    kind_low_water_clear: "น้ำต่ำคลี่คลาย", kind_sensor_offline: "เซนเซอร์ออฟไลน์", kind_sensor_online: "เซนเซอร์กลับมา",
    kind_qc: "คุณภาพข้อมูล", kind_manual: "ข้อความจากเจ้าหน้าที่", kind_test: "ทดสอบ", kind_quota: "โควตา LINE",
  },
  en: {
    title: "Water levels", offline: "offline", live: "live", login: "Log in", logout: "Log out",
    nav_overview: "Overview", nav_map: "Map", nav_alerts: "Alerts", nav_health: "Station health",
    nav_officer: "Officers", nav_public: "Public view",
    overview: "All stations, most dangerous first", map: "Map (offline schematic)", alerts: "Alert log",
    health: "Station health", officer: "Officer actions",
    col_station: "Station", col_level: "Level (m MSL)", col_trend: "Trend", col_forecast: "Forecast peak",
    col_age: "Data age", col_qc: "QC", col_time: "Time", col_zone: "Zone", col_alert: "Level / kind",
    col_recipients: "Recipients", col_delivery: "Delivery", col_last_seen: "Last seen", col_battery: "Battery",
    col_signal: "Signal", col_status: "Connection", col_who: "Who", col_action: "Action", col_target: "Target",
    lvl_0: "normal", lvl_1: "watch", lvl_2: "warning", lvl_3: "evacuate", stale: "stale data",
    rising: "rising", falling: "falling", steady: "steady", unknown: "unknown",
    cm_per_h: "cm/h", mm_1h: "mm/h", rain_gauge: "rain gauge", no_data: "no data", no_forecast: "—",
    ago: "ago", s: "s", min: "min", h: "h", d: "d",
    qc_pass: "pass", qc_suspect: "suspect", qc_fail: "fail", qc_missing: "missing", qc_not_evaluated: "not checked",
    online: "online", offline_since: "offline since", silent: "silent", unknown_status: "unknown",
    maintenance: "maintenance", maint_on: "Put in maintenance", maint_off: "End maintenance",
    not_running: "not running", alerts_not_running: "The alert service is not running in this process",
    no_alerts: "No alerts yet", acknowledge: "Acknowledge", acknowledged: "acknowledged",
    zoom_reset: "Reset zoom", chart_hint: "Drag on the chart to zoom · double-click to reset",
    map_note: "Approximate schematic; needs no internet", public_note: "Municipal data, read only",
    manual_message: "Message residents", choose_zones: "Choose zones", text_th: "Thai text",
    text_en: "English text", preview: "Preview", preview_title: "Preview",
    confirm_send: "Confirm and send", cancel: "Cancel", recipients: "recipients", residents: "residents",
    sent: "Sent", test_alert: "Test alert (officers only)", send_test: "Send test alert",
    audit: "Audit log", username: "Username", password: "Password", login_failed: "Wrong username or password",
    observed: "observed level", flagged: "QC-flagged", forecast_median: "forecast (median)",
    band_low: "lower bound", band_high: "upper bound", rain: "rain (mm)", watch_line: "watch", warning_line: "warning",
    evacuate_line: "evacuate", peak: "peak", at: "at", level_now: "latest level", rate: "rate",
    forecast_issued: "forecast issued", services: "Services", ingest: "ingest", forecaster: "forecaster",
    alert_service: "alerts", running: "running", zone_level: "zone level", officers_only: "officers", stored: "stored", rejected: "rejected", now: "now",
    dl_pending: "pending", dl_sending: "sending", dl_delivered: "delivered", dl_partial: "partly delivered", dl_failed: "failed",
    dl_no_recipients: "no recipients", dl_superseded: "superseded", kind_escalate: "level up", kind_forecast: "forecast", kind_rise: "fast rise",
    kind_reminder: "reminder", kind_deescalate: "level down", kind_all_clear: "all clear", kind_low_water: "low water",
    kind_low_water_clear: "low water over", kind_sensor_offline: "sensor offline", kind_sensor_online: "sensor back",
    kind_qc: "data quality", kind_manual: "officer message", kind_test: "test", kind_quota: "LINE quota",
  },
};
const LEVEL_NAMES = ["NORMAL", "WATCH", "WARNING", "EVACUATE"];
const LEVEL_COLOURS = ["#2e7d32", "#f9a825", "#ef6c00", "#c62828"];
const ARROWS = { rising: "▲", falling: "▼", steady: "▶", unknown: "·" };

const state = {
  lang: localStorage.getItem("fw_lang") || "th",
  stations: [], zones: [], nowS: null, me: { logged_in: false },
  detailId: null, detailHours: 72, chart: null, geo: null, refreshTimer: null, alertsTimer: null,
};

const $ = (sel) => document.querySelector(sel);
const t = (key, fallback) => (I18N[state.lang] && I18N[state.lang][key]) || I18N.en[key] || fallback || key;
const zoneShort = (zoneId) => String(zoneId).replace(/^moo-/, state.lang === "th" ? "หมู่ " : "Moo ");
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
};
const name = (obj) => (state.lang === "th" ? obj.name_th : obj.name_en) || obj.name_en || obj.id;
const fmtM = (v) => (v === null || v === undefined ? "–" : v.toFixed(2));
/* Page features in their own files (residents.js ...) push { map, overview, events, render, refresh } here. */
window.fwHooks = window.fwHooks || [];
const runHooks = (hook, ...args) => window.fwHooks.forEach((h) => { if (h[hook]) h[hook](...args); });

/* ---------------------------------------------------------------- time */
function fmtTime(tsS, withDate = false) {
  if (tsS === null || tsS === undefined) return "–";
  const opts = { timeZone: "Asia/Bangkok", hour: "2-digit", minute: "2-digit", hour12: false };
  if (withDate) Object.assign(opts, { day: "numeric", month: "short" });
  // th-TH formats in the Buddhist era, as residents read dates.
  return new Intl.DateTimeFormat(state.lang === "th" ? "th-TH" : "en-GB", opts).format(new Date(tsS * 1000));
}
function dayOf(tsS) {
  return new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Bangkok" }).format(new Date(tsS * 1000));
}
function axisLabel(tsS, prevS) {
  // Time on every tick, the Bangkok date only where the day changes (and on the first tick).
  const time = fmtTime(tsS);
  if (prevS !== null && dayOf(prevS) === dayOf(tsS)) return time;
  const date = new Intl.DateTimeFormat(state.lang === "th" ? "th-TH" : "en-GB",
    { timeZone: "Asia/Bangkok", day: "numeric", month: "short" }).format(new Date(tsS * 1000));
  return `${time}\n${date}`;
}
function fmtAge(ageS) {
  if (ageS === null || ageS === undefined) return t("no_data");
  const a = Math.max(0, ageS);
  const [v, u] = a < 90 ? [Math.round(a), "s"] : a < 5400 ? [Math.round(a / 60), "min"]
    : a < 172800 ? [Math.round(a / 3600), "h"] : [Math.round(a / 86400), "d"];
  return `${v} ${t(u)} ${t("ago")}`;
}
function tickClock() {
  const now = state.nowS !== null ? state.nowS + (Date.now() / 1000 - state.nowFetchedWallS) * state.factor : Date.now() / 1000;
  const opts = { timeZone: "Asia/Bangkok", day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
  $("#clock").textContent = new Intl.DateTimeFormat(state.lang === "th" ? "th-TH" : "en-GB", opts).format(new Date(now * 1000));
}

/* ---------------------------------------------------------------- http */
async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.me.csrf_token) headers["X-CSRF-Token"] = state.me.csrf_token;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error(typeof data.detail === "string" ? data.detail : `HTTP ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return data;
}

/* ---------------------------------------------------------------- i18n */
function applyLanguage() {
  document.documentElement.lang = state.lang;
  document.querySelectorAll("[data-i18n]").forEach((node) => { node.textContent = t(node.dataset.i18n); });
  const toggle = $("#lang-toggle");
  if (toggle) toggle.textContent = state.lang === "th" ? "EN" : "ไทย";
  // The municipality comes from the server (/api/site): one page serves any site.
  const site = state.site ? name(state.site) : "";
  const siteName = $("#site-name");
  if (siteName) siteName.textContent = site;
  document.title = site ? `${t("title")} · ${site}` : `floodwatch · ${t("title")}`;
  setLive(state.liveOn);
  renderAll();
}

/* ------------------------------------------------------------ overview */
function levelBox(row) {
  if (row.external && window.fwExternal) return window.fwExternal.valueBox(row);
  if (row.kind === "rain") {
    const rain = row.rain_1h_mm;
    return el("div", { class: "lvlbox rainbox lvl-0" },
      el("span", { class: "level", text: rain === null ? "–" : rain.toFixed(1) }),
      el("span", { class: "cls", text: `${t("mm_1h")} · ${t("rain_gauge")}` }));
  }
  const thr = row.levels ? row.levels.map((v) => v.toFixed(2)).join(" / ") : "";
  return el("div", { class: `lvlbox lvl-${row.level_class}` },
    el("span", { class: "level", text: fmtM(row.level_m) }),
    el("span", { class: "cls", text: t(`lvl_${row.level_class}`) }),
    el("span", { class: "thr", text: thr }));
}
function trendCell(row) {
  if (row.kind === "rain") return el("td", { class: "c-trend nowrap" });
  const rate = row.rate_cm_per_h;
  return el("td", { class: "c-trend nowrap" },
    el("span", { class: `arrow ${row.trend}`, title: t(row.trend), text: ARROWS[row.trend] || "·" }), " ",
    el("span", { class: "rate", text: rate === null ? t("unknown") : `${rate > 0 ? "+" : ""}${rate.toFixed(1)} ${t("cm_per_h")}` }));
}
function forecastCell(row) {
  const fc = row.forecast;
  if (!fc || fc.peak_m === null) return el("td", { class: "c-forecast", text: t("no_forecast") });
  return el("td", { class: "c-forecast" },
    el("span", { class: "mobile-label", text: `${t("col_forecast")} ` }),
    el("span", { class: `chip lvl-${fc.peak_class}`, text: fmtM(fc.peak_m) }), " ",
    el("span", { class: "sid", text: `${t("at")} ${fmtTime(fc.peak_s, true)}` }));
}
function renderOverview() {
  const body = $("#station-rows");
  if (!body) return;
  const rows = state.stations.map((row) => {
    const tr = el("tr", {
      class: `station-row${row.stale ? " stale" : ""}`, "data-station": row.id, "data-level": row.level_class,
      onclick: OFFICER_VIEW ? () => { location.hash = `station=${row.id}`; } : null,
      onkeydown: OFFICER_VIEW ? (ev) => { if (ev.key === "Enter") location.hash = `station=${row.id}`; } : null,
      tabindex: OFFICER_VIEW ? "0" : null,
    },
      el("td", { class: "c-station" },
        el("div", { class: "name", text: name(row) }),
        el("span", { class: "sid", text: row.id }),
        row.maintenance ? el("span", { class: "badge maint", text: t("maintenance") }) : null,
        row.stale ? el("span", { class: "badge", text: t("stale") }) : null),
      el("td", { class: "c-level" }, levelBox(row)),
      trendCell(row),
      forecastCell(row),
      el("td", { class: "c-age nowrap", title: fmtTime(row.ts_s, true), text: fmtAge(row.data_age_s) }),
      el("td", { class: `c-qc qc-${row.qc_name || "missing"}`, title: row.qc_tests || "",
        text: row.qc_name ? t(`qc_${row.qc_name}`) : t("no_data") }));
    return tr;
  });
  body.replaceChildren(...rows);
  runHooks("overview", body);
}

/* ----------------------------------------------------------------- map */
async function loadGeo() {
  try {
    state.site = await api("/api/site");
    applyLanguage();
    // The site's own map (zones and river); without one the map shows the stations alone.
    state.geo = state.site.map_url ? await api(state.site.map_url) : { features: [] };
  } catch (e) { state.geo = state.geo || { features: [] }; }
  renderMap();
}
function renderMap() {
  const svg = $("#map-svg");
  if (!svg || !state.geo) return;
  const NS = "http://www.w3.org/2000/svg";
  const pts = [];
  for (const f of state.geo.features) {
    const g = f.geometry;
    const coords = g.type === "Polygon" ? g.coordinates[0] : g.type === "LineString" ? g.coordinates : [g.coordinates];
    pts.push(...coords);
  }
  for (const s of state.stations) pts.push([s.lon, s.lat]);
  if (!pts.length) return;
  const lons = pts.map((p) => p[0]), lats = pts.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...lons), Math.max(...lons), Math.min(...lats), Math.max(...lats)];
  const kx = Math.cos(((y0 + y1) / 2) * Math.PI / 180); // equirectangular: shrink longitude by cos(lat)
  const W = 600, H = 500, pad = 12;
  const scale = Math.min((W - 2 * pad) / ((x1 - x0) * kx), (H - 2 * pad) / (y1 - y0));
  const px = (lon) => pad + (lon - x0) * kx * scale;
  const py = (lat) => H - pad - (lat - y0) * scale;
  const path = (coords, close) => coords.map((c, i) => `${i ? "L" : "M"}${px(c[0]).toFixed(1)},${py(c[1]).toFixed(1)}`).join("") + (close ? "Z" : "");
  const mk = (tag, attrs, text) => {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  };
  const zoneLevel = Object.fromEntries(state.zones.map((z) => [z.id, z.level]));
  const nodes = [];
  const labels = [];
  for (const f of state.geo.features) {
    const p = f.properties || {};
    if (p.kind === "zone") {
      const lvl = zoneLevel[p.id] || 0;
      const zone = state.zones.find((z) => z.id === p.id) || p;
      const shape = mk("path", { d: path(f.geometry.coordinates[0], true), class: "zone", fill: LEVEL_COLOURS[lvl], "data-zone": p.id, "data-level": lvl });
      const subs = zone.subscribers !== undefined && zone.subscribers !== null ? ` · ${zone.subscribers} ${t("residents")}` : "";
      shape.append(mk("title", {}, `${name(zone)}: ${t(`lvl_${lvl}`)}${subs}`));
      nodes.push(shape);
      const ring = f.geometry.coordinates[0];
      const cx = ring.slice(0, -1).reduce((a, c) => a + c[0], 0) / (ring.length - 1);
      const cy = ring.slice(0, -1).reduce((a, c) => a + c[1], 0) / (ring.length - 1);
      labels.push(mk("text", { x: px(cx), y: py(cy), class: "zone-label", "text-anchor": "middle" }, p.id.replace("moo-", state.lang === "th" ? "หมู่ " : "Moo ")));
    }
  }
  for (const kind of ["road", "canal", "river"]) {
    for (const f of state.geo.features) {
      if ((f.properties || {}).kind !== kind) continue;
      const line = mk("path", { d: path(f.geometry.coordinates, false), class: kind });
      line.append(mk("title", {}, name(f.properties)));
      nodes.push(line);
    }
  }
  for (const s of state.stations) {
    const colour = s.stale ? "#78909c" : LEVEL_COLOURS[s.level_class];
    const cx = px(s.lon), cy = py(s.lat);
    const shape = s.kind === "rain"
      ? mk("rect", { x: cx - 6, y: cy - 6, width: 12, height: 12, fill: "#eceff1", class: "station rain", "data-station": s.id })
      : mk("circle", { cx, cy, r: 10, fill: colour, class: "station", "data-station": s.id, "data-level": s.level_class });
    shape.append(mk("title", {}, `${name(s)} ${s.kind === "rain" ? "" : fmtM(s.level_m) + " m"}`));
    if (OFFICER_VIEW) shape.addEventListener("click", () => { location.hash = `station=${s.id}`; });
    nodes.push(shape);
    if (s.kind !== "rain") labels.push(mk("text", { x: cx + 13, y: cy + 4 }, `${s.id.replace(/^[A-Za-z]+-/, "")} ${fmtM(s.level_m)}`));
  }
  svg.replaceChildren(...nodes, ...labels);
  runHooks("map", svg, px, py, mk);
}

/* -------------------------------------------------------------- alerts */
const pick = (obj, ...keys) => { for (const k of keys) if (obj[k] !== undefined && obj[k] !== null) return obj[k]; return null; };
async function refreshAlerts() {
  const body = $("#alert-rows");
  if (!body) return;
  let data;
  try { data = await api("/api/alerts?limit=40"); } catch (e) { $("#alerts-status").textContent = e.message; return; }
  state.alertsRunning = data.running;
  state.alerts = data.entries || [];
  renderAlerts();
}
function renderAlerts() {
  const body = $("#alert-rows");
  if (!body) return;
  const status = $("#alerts-status");
  status.textContent = state.alertsRunning === false ? t("alerts_not_running") : (state.alerts || []).length ? "" : t("no_alerts");
  const zonesById = Object.fromEntries(state.zones.map((z) => [z.id, z]));
  body.replaceChildren(...(state.alerts || []).map((a) => {
    const id = pick(a, "id", "alert_id");
    const zone = pick(a, "zone", "zone_id");
    const audience = pick(a, "audience");
    const zoneText = Array.isArray(zone) ? zone.map(zoneShort).join(", ") : zone ? zoneShort(zone)
      : audience === "officers" ? t("officers_only") : "";
    const zoneTitle = zonesById[zone] ? name(zonesById[zone]) : "";
    const level = pick(a, "level");
    const kind = pick(a, "kind", "action", "type") || "";
    const acked = pick(a, "acknowledged_by", "acked_by");
    const levelNum = typeof level === "number" ? level : LEVEL_NAMES.indexOf(String(level).toUpperCase());
    const st = pick(a, "state", "delivery_state", "delivery", "status");
    const delivery = st === null ? "–" : t(`dl_${st}`, st);
    const counts = a.delivered || a.failed ? el("div", { class: "sid", text: `${a.delivered || 0} ✓ · ${a.failed || 0} ✗` }) : null;
    let ack = null;
    if (state.me.logged_in && id !== null && !acked) {
      ack = el("button", { type: "button", class: "ack", "data-alert": id, text: t("acknowledge"), onclick: () => acknowledge(id) });
    } else if (acked) {
      ack = el("span", { class: "sid", text: `${t("acknowledged")}: ${acked}` });
    }
    return el("tr", { "data-alert": id ?? "" },
      el("td", { class: "nowrap", text: fmtTime(pick(a, "time_s", "ts_s", "created_s", "sent_s"), true), title: a.text || "" }),
      el("td", { class: "nowrap", text: zoneText, title: zoneTitle }),
      el("td", {}, levelNum >= 0 && kind !== "manual" && kind !== "test" ? el("span", { class: `chip lvl-${levelNum}`, text: t(`lvl_${levelNum}`) }) : "", ` ${t(`kind_${kind}`, kind)}`,
        a.text ? el("div", { class: "alert-text", text: a.text.split("\n")[0].slice(0, 90) }) : null),
      el("td", { text: String(pick(a, "recipients", "recipient_count", "residents") ?? "–") }),
      el("td", { class: `dl-${st}` }, delivery, counts),
      el("td", {}, ack));
  }));
}
async function acknowledge(id) {
  try { await api(`/api/alerts/${encodeURIComponent(id)}/acknowledge`, { method: "POST" }); } catch (e) { alert(e.message); }
  refreshAlerts(); refreshAudit();
}

/* -------------------------------------------------------------- health */
async function refreshHealth() {
  const body = $("#health-rows");
  if (!body) return;
  let h;
  try { h = await api("/api/health"); } catch (e) { $("#services").textContent = e.message; return; }
  state.health = h;
  renderHealth();
}
function renderHealth() {
  const body = $("#health-rows");
  const h = state.health;
  if (!body || !h) return;
  const yes = (b) => (b ? t("running") : t("not_running"));
  const ing = h.ingest.stats || null;
  const ingestCounts = ing && ing.stored !== undefined ? ` (${t("stored")} ${ing.stored} · ${t("rejected")} ${ing.rejected ?? 0})` : "";
  $("#services").textContent = `${t("services")}: ${t("ingest")} ${yes(h.ingest.running)}${ingestCounts} · ${t("forecaster")} ${yes(h.forecasts.running)}`
    + (h.forecasts.issued_s ? ` (${t("forecast_issued")} ${fmtTime(h.forecasts.issued_s, true)})` : "")
    + ` · ${t("alert_service")} ${yes(h.alerts.running)}`;
  body.replaceChildren(...h.stations.filter((s) => !s.external).map((s) => {
    const statusText = s.status === "offline" ? `${t("offline_since")} ${fmtTime(s.status_since_s, true)}`
      : s.status === "online" ? t("online") : s.status === "silent" ? t("silent") : t("unknown_status");
    const maint = state.me.logged_in
      ? el("button", { type: "button", class: "maint-btn", "data-station": s.id, text: s.maintenance ? t("maint_off") : t("maint_on"), onclick: () => setMaintenance(s.id, !s.maintenance) })
      : s.maintenance ? el("span", { class: "badge maint", text: t("maintenance") }) : null;
    return el("tr", { "data-station": s.id, class: s.stale ? "stale" : "" },
      el("td", {}, el("div", { class: "name", text: name(s) }), el("span", { class: "sid", text: s.id })),
      el("td", {}, s.ts_s ? el("div", { class: "nowrap", text: fmtTime(s.ts_s, true) }) : t("no_data"),
        s.ts_s ? el("div", { class: "sid", text: fmtAge(s.data_age_s) }) : null),
      el("td", { class: "nowrap", text: s.battery_v === null ? "–" : `${s.battery_v.toFixed(2)} V` }),
      el("td", { class: "nowrap", text: s.rssi_dbm === null ? "–" : `${Math.round(s.rssi_dbm)} dBm` }),
      el("td", { class: `st-${s.status}` }, statusText, " ", maint));
  }));
}
async function setMaintenance(stationId, on) {
  try { await api(`/api/stations/${encodeURIComponent(stationId)}/maintenance`, { method: "POST", body: { on, note: "" } }); }
  catch (e) { alert(e.message); }
  refreshStations(); refreshHealth(); refreshAudit();
}

/* ------------------------------------------------------ station detail */
function openDetailFromHash() {
  const m = location.hash.match(/^#station=([\w.-]+)/);
  const panel = $("#station-detail");
  if (!panel) return;
  if (!m) { panel.hidden = true; state.detailId = null; return; }
  state.detailId = m[1];
  panel.hidden = false;
  panel.scrollIntoView({ block: "start" });
  loadDetail();
}
async function loadDetail() {
  if (!state.detailId) return;
  const id = state.detailId;
  let series;
  try { series = await api(`/api/stations/${encodeURIComponent(id)}/series?hours=${state.detailHours}`); }
  catch (e) { $("#detail-summary").textContent = e.message; return; }
  if (id !== state.detailId) return;
  state.series = series;
  renderDetail();
}
function renderDetail() {
  const series = state.series;
  if (!series || !state.detailId) return;
  const row = (state.allStations || state.stations).find((s) => s.id === state.detailId);
  if (row) {
    $("#detail-title").textContent = `${name(row)} (${row.id})`;
    const fc = row.forecast;
    $("#detail-summary").replaceChildren(
      el("div", {}, el("div", { class: "sid", text: t("level_now") }), levelBox(row)),
      el("div", {}, el("div", { class: "sid", text: t("rate") }), el("div", { text: row.rate_cm_per_h === null ? "–" : `${ARROWS[row.trend]} ${row.rate_cm_per_h.toFixed(1)} ${t("cm_per_h")}` })),
      el("div", {}, el("div", { class: "sid", text: t("col_forecast") }), el("div", { text: fc && fc.peak_m !== null ? `${fmtM(fc.peak_m)} m ${t("at")} ${fmtTime(fc.peak_s, true)}` : t("no_forecast") })),
      el("div", {}, el("div", { class: "sid", text: t("col_age") }), el("div", { text: fmtAge(row.data_age_s) })));
    const mbtn = $("#maintenance-toggle");
    if (mbtn) {
      mbtn.textContent = row.maintenance ? t("maint_off") : t("maint_on");
      mbtn.onclick = () => setMaintenance(row.id, !row.maintenance);
    }
  }
  drawChart(series);
}
function drawChart(series) {
  const box = $("#chart");
  if (!box || typeof uPlot === "undefined") return;
  const obs = series.observed, rain = series.rain, fc = series.forecast;
  const nil = (a) => a.map((v) => (v === null ? null : v));
  // uPlot.join aligns the three time bases; a series has no point (undefined,
  // not a gap) at another table's times, while null inside a table is a real gap.
  const tables = [[obs.t_s, nil(obs.value), nil(obs.flagged)], [rain.t_s || [], nil(rain.rain_mm || [])]];
  if (fc) tables.push([fc.t_s, nil(fc.lower_m), nil(fc.upper_m), nil(fc.median_m)]);
  const data = uPlot.join(tables);
  const levels = series.levels;
  const n = data[0].length;
  const lineSeries = [];
  if (levels) {
    ["watch_line", "warning_line", "evacuate_line"].forEach((key, k) => {
      data.push(new Array(n).fill(levels[k]));
      lineSeries.push({ label: `${t(key)} ${levels[k].toFixed(2)}`, stroke: LEVEL_COLOURS[k + 1], width: 1.5, dash: [8, 5], points: { show: false } });
    });
  }
  const isRainStation = series.kind === "rain";
  const seriesOpts = [
    { label: t("col_time"), value: (u, v) => (v === null ? "–" : fmtTime(v, true)) },
    { label: isRainStation ? t("rain") : series.series === "predicted" ? t("predicted_series") : t("observed"), stroke: "#0d47a1", width: 2, spanGaps: false, points: { show: false } },
    { label: t("flagged"), stroke: "#c62828", width: 0, paths: () => null, points: { show: true, size: 7, fill: "#c62828", stroke: "#c62828" } },
    { label: t("rain"), scale: "rain", fill: "rgba(38,166,154,0.45)", stroke: "rgba(38,166,154,0.9)", width: 1, paths: uPlot.paths.bars({ size: [0.9, 40] }), points: { show: false } },
  ];
  if (fc) {
    seriesOpts.push(
      { label: t("band_low"), stroke: "rgba(123,31,162,0.35)", width: 1, points: { show: false } },
      { label: t("band_high"), stroke: "rgba(123,31,162,0.35)", width: 1, points: { show: false } },
      { label: t("forecast_median"), stroke: "#7b1fa2", width: 2, dash: [4, 3], points: { show: false } });
  }
  seriesOpts.push(...lineSeries);
  const width = Math.max(280, box.clientWidth || 600);
  const opts = {
    width, height: width < 500 ? 260 : 340,
    series: seriesOpts,
    bands: fc ? [{ series: [5, 4], fill: "rgba(123,31,162,0.15)" }] : [],
    scales: { x: { time: true }, rain: { range: (u, mn, mx) => [0, Math.max(5, (mx || 0) * 3)] } },
    axes: [
      { space: 60, values: (u, splits) => splits.map((v, i) => axisLabel(v, i ? splits[i - 1] : null)) },
      { label: series.unit || (isRainStation ? "mm" : "m MSL"), size: 55 },
      { scale: "rain", side: 1, label: "mm", grid: { show: false }, size: 45 },
    ],
    // Ticks on Bangkok hours and midnights, whatever the viewing device's time zone.
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Asia/Bangkok"),
    cursor: { drag: { x: true, y: false } },
    legend: { live: true },
    hooks: {
      // A vertical "now" line: observed to its left, forecast to its right.
      draw: [(u) => {
        const x = u.valToPos(series.now_s, "x", true);
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = "rgba(55,71,79,0.7)";
        ctx.lineWidth = 1.5 * devicePixelRatio;
        ctx.setLineDash([2 * devicePixelRatio, 3 * devicePixelRatio]);
        ctx.beginPath();
        ctx.moveTo(x, u.bbox.top);
        ctx.lineTo(x, u.bbox.top + u.bbox.height);
        ctx.stroke();
        ctx.fillStyle = "rgba(55,71,79,0.9)";
        ctx.font = `${11 * devicePixelRatio}px sans-serif`;
        ctx.fillText(t("now"), x + 4 * devicePixelRatio, u.bbox.top + 12 * devicePixelRatio);
        ctx.restore();
      }],
    },
  };
  if (state.chart) state.chart.destroy();
  box.replaceChildren();
  state.chart = new uPlot(opts, data, box);
}

/* ------------------------------------------------------------- officer */
async function refreshMe() {
  if (!OFFICER_VIEW) return;
  try { state.me = await api("/api/me"); } catch (e) { state.me = { logged_in: false }; }
  const inn = state.me.logged_in;
  document.querySelectorAll(".officer-only").forEach((n) => { n.hidden = !inn; });
  $("#login-open").hidden = inn;
  $("#logout").hidden = !inn;
  $("#officer-name").hidden = !inn;
  $("#officer-name").textContent = inn ? state.me.display_name : "";
  if (inn) { renderZonePicks(); refreshAudit(); }
  renderAlerts(); renderHealth();
  runHooks("refresh");
}
function renderZonePicks() {
  const box = $("#zone-picks");
  if (!box) return;
  const checked = new Set([...box.querySelectorAll("input:checked")].map((n) => n.value));
  const legend = el("legend", { "data-i18n": "choose_zones", text: t("choose_zones") });
  box.replaceChildren(legend, ...state.zones.map((z) => el("label", {},
    el("input", { type: "checkbox", name: "zone", value: z.id, checked: checked.has(z.id) }),
    el("span", { class: `chip lvl-${z.level}`, text: " " }), name(z))));
}
async function refreshAudit() {
  const body = $("#audit-rows");
  if (!body || !state.me.logged_in) return;
  try {
    const data = await api("/api/audit?limit=30");
    body.replaceChildren(...data.entries.map((a) => el("tr", {},
      el("td", { text: fmtTime(a.ts_s, true) }), el("td", { text: a.username }),
      el("td", { text: a.action }), el("td", { text: a.target }))));
  } catch (e) { /* logged out meanwhile */ }
}
function messageBody() {
  return {
    zones: [...document.querySelectorAll("#zone-picks input:checked")].map((n) => n.value),
    text_th: $("#text-th").value, text_en: $("#text-en").value,
  };
}
function wireOfficer() {
  if (!OFFICER_VIEW) return;
  const dialog = $("#login-dialog");
  $("#login-open").addEventListener("click", () => { $("#login-error").textContent = ""; dialog.showModal(); });
  $("#login-cancel").addEventListener("click", () => dialog.close());
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("/api/login", { method: "POST", body: { username: $("#login-user").value, password: $("#login-password").value } });
      $("#login-password").value = "";
      dialog.close();
      await refreshMe();
    } catch (e) { $("#login-error").textContent = e.status === 401 ? t("login_failed") : e.message; }
  });
  $("#logout").addEventListener("click", async () => {
    try { await api("/api/logout", { method: "POST" }); } catch (e) { /* already gone */ }
    await refreshMe();
  });
  let pending = null;
  $("#message-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("#message-result").textContent = "";
    const body = messageBody();
    try {
      const p = await api("/api/messages/preview", { method: "POST", body });
      pending = { ...body, confirm_token: p.confirm_token };
      $("#preview-text").textContent = p.text;
      $("#preview-recipients").textContent = `${t("recipients")}: ` + p.zones.map((z) => `${name(z)} (${z.recipients ?? "?"})`).join(", ")
        + (p.total_recipients !== null ? ` = ${p.total_recipients} ${t("residents")}` : "");
      $("#preview").hidden = false;
    } catch (e) { $("#message-result").textContent = e.message; }
  });
  $("#cancel-send").addEventListener("click", () => { pending = null; $("#preview").hidden = true; });
  $("#confirm-send").addEventListener("click", async () => {
    if (!pending) return;
    try {
      const r = await api("/api/messages/send", { method: "POST", body: pending });
      $("#message-result").textContent = `${t("sent")}: ${r.zones.map((z) => name(z)).join(", ")}`;
      $("#preview").hidden = true;
      pending = null;
    } catch (e) { $("#message-result").textContent = e.message; }
    refreshAlerts(); refreshAudit();
  });
  $("#test-alert").addEventListener("click", async () => {
    try { await api("/api/test-alert", { method: "POST", body: { text: "" } }); $("#test-result").textContent = t("sent"); }
    catch (e) { $("#test-result").textContent = e.message; }
    refreshAudit();
  });
}

/* ---------------------------------------------------------------- live */
async function refreshStations() {
  let data;
  try { data = await api("/api/stations"); } catch (e) { return; }
  // External stations (another agency's, a peer's, a prediction) have their own panel (feeds.js).
  state.allStations = data.stations;
  state.stations = data.stations.filter((s) => !s.external);
  state.zones = data.zones;
  state.nowS = data.now_s;
  state.nowFetchedWallS = Date.now() / 1000;
  state.factor = data.clock_factor || 1;
  tickClock();
  renderOverview();
  renderMap();
  if (state.detailId) renderDetail();
  document.dispatchEvent(new CustomEvent("fw:stations"));
}
function scheduleRefresh(alsoDetail) {
  if (alsoDetail) state.detailDirty = true;
  if (state.refreshTimer) return;
  // Coalesce a burst of events (a batch of readings) into one refetch.
  state.refreshTimer = setTimeout(() => {
    state.refreshTimer = null;
    refreshStations();
    refreshHealth();
    refreshAlerts(); // the alert service decides on the same readings
    if (state.detailDirty && state.detailId) { state.detailDirty = false; loadDetail(); }
  }, 150);
}
function setLive(on) {
  state.liveOn = on;
  const live = $("#live");
  if (!live) return;
  live.className = `live ${on ? "on" : "off"}`;
  live.textContent = on ? t("live") : t("offline");
}
function connectEvents() {
  const es = new EventSource("/api/events");
  es.addEventListener("hello", () => { setLive(true); refreshAll(); });
  es.addEventListener("readings", () => scheduleRefresh(true));
  es.addEventListener("status", () => scheduleRefresh(false));
  es.addEventListener("feeds", () => scheduleRefresh(false));
  es.addEventListener("forecast", () => scheduleRefresh(true));
  es.addEventListener("alert", () => { scheduleRefresh(false); refreshAlerts(); });
  es.addEventListener("audit", () => { refreshAudit(); });
  es.addEventListener("resync", () => refreshAll());
  es.onerror = () => setLive(false); // EventSource retries by itself (server sets retry:)
  runHooks("events", es);
}
function renderAll() {
  renderOverview(); renderMap(); renderAlerts(); renderHealth(); renderDetail(); renderZonePicks();
  runHooks("render");
  document.dispatchEvent(new CustomEvent("fw:stations"));
}
async function refreshAll() {
  await refreshStations();
  refreshAlerts(); refreshHealth();
  if (state.detailId) loadDetail();
  runHooks("refresh");
}

window.fw = { state, api, t, el, fmtTime, name, OFFICER_VIEW };
function main() {
  $("#lang-toggle").addEventListener("click", () => {
    state.lang = state.lang === "th" ? "en" : "th";
    localStorage.setItem("fw_lang", state.lang);
    applyLanguage();
  });
  document.querySelectorAll(".range-buttons [data-hours]").forEach((b) => b.addEventListener("click", () => {
    state.detailHours = Number(b.dataset.hours);
    document.querySelectorAll(".range-buttons [data-hours]").forEach((o) => o.classList.toggle("active", o === b));
    loadDetail();
  }));
  const zr = $("#zoom-reset");
  if (zr) zr.addEventListener("click", () => renderDetail());
  const close = $("#detail-close");
  if (close) close.addEventListener("click", () => { history.replaceState(null, "", location.pathname); openDetailFromHash(); });
  window.addEventListener("hashchange", openDetailFromHash);
  let resizeTimer = null;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(renderDetail, 200); });
  wireOfficer();
  applyLanguage();
  refreshMe();
  loadGeo();
  refreshAll();
  openDetailFromHash();
  connectEvents();
  tickClock();
  setInterval(tickClock, 1000);
  // A slow safety net: ages and clocks move even when no event arrives.
  setInterval(() => { refreshStations(); refreshHealth(); refreshAlerts(); }, 30000);
}
main();
