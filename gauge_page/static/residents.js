/* floodwatch live page: residents' flood reports, the LINE quota, village loudspeakers.
 *
 * Loaded before app.js; registers hooks that app.js calls (window.fwHooks):
 * "map" draws the reports and loudspeakers over the SVG map, "overview" puts
 * verified reports beside their gauge, "events" listens to the live
 * "report" / "quota" / "loudspeaker" events, "render" / "refresh" follow
 * language and log-in changes. Data comes from /api/reports, /api/quota and
 * /api/loudspeakers (docs/page.md).
 */
"use strict";

(function () {
  const L = {
    th: {
      nav_reports: "รายงานจากประชาชน", reports: "รายงานน้ำท่วมจากประชาชน", quota: "โควตาข้อความ LINE เดือนนี้",
      loudspeakers: "หอกระจายข่าว", col_time: "เวลา", col_place: "พื้นที่", col_depth: "ความลึก", col_photo: "รูป",
      col_state: "สถานะ", col_controller: "เครื่องควบคุม", col_last: "คำสั่งล่าสุด", col_delivery: "การส่ง",
      no_reports: "ยังไม่มีรายงาน", public_only: "รายงานจากประชาชนแสดงเฉพาะเจ้าหน้าที่ที่เข้าสู่ระบบ",
      st_new: "ใหม่", st_verified: "ตรวจสอบแล้ว", st_hidden: "ซ่อน", verify: "ยืนยัน", hide: "ซ่อน", reopen: "เปิดใหม่",
      photo: "ดูรูป", has_photo: "มีรูป", badge: "รายงาน", near: "ใกล้", not_running: "ระบบแจ้งเตือนไม่ได้ทำงาน", used: "ใช้ไป", of: "จาก",
      messages: "ข้อความ", left: "เหลือ", pending: "รอส่ง", no_limit: "ไม่ได้ตั้งวงเงินรายเดือน",
      unknown_quota: "ยังไม่ได้อ่านโควตาจาก LINE", low: "โควตาใกล้หมด", shortfall: "แจ้งเตือนที่โควตาไม่พอ",
      missing: "คนจะไม่ได้รับ", checked: "ตรวจเมื่อ", no_controllers: "ยังไม่ได้ตั้งค่าเครื่องควบคุมเสียงตามสาย",
      broker_down: "ยังเชื่อมต่อ MQTT ไม่ได้", ls_pending: "รอส่ง", ls_sent: "ส่งแล้ว รอตอบรับ", ls_undelivered: "ส่งไม่ถึง",
      ls_acknowledged: "เล่นแล้ว", ls_failed: "ล้มเหลว", ls_superseded: "ถูกแทนที่", attempts: "ครั้ง", audio: "ฟังเสียงประกาศ",
      announcer: "ข้อความให้ผู้ประกาศอ่าน", none: "—",
      d_ankle: "ตาตุ่ม", d_knee: "เข่า", d_waist: "เอว", d_road_closed: "ถนนปิด",
    },
    en: {
      nav_reports: "Residents' reports", reports: "Residents' flood reports", quota: "LINE messages this month",
      loudspeakers: "Village loudspeakers", col_time: "Time", col_place: "Place", col_depth: "Depth", col_photo: "Photo",
      col_state: "State", col_controller: "Controller", col_last: "Last command", col_delivery: "Delivery",
      no_reports: "No reports yet", public_only: "Residents' reports are shown to logged-in officers only",
      st_new: "new", st_verified: "verified", st_hidden: "hidden", verify: "Verify", hide: "Hide", reopen: "Reopen",
      photo: "photo", has_photo: "yes", badge: "reports", near: "near", not_running: "The alert service is not running", used: "used", of: "of",
      messages: "messages", left: "left", pending: "queued", no_limit: "no monthly limit set",
      unknown_quota: "LINE's quota not read yet", low: "quota running low", shortfall: "Alerts the quota could not cover",
      missing: "would not get it", checked: "checked", no_controllers: "No loudspeaker controllers configured",
      broker_down: "not connected to MQTT yet", ls_pending: "pending", ls_sent: "sent, awaiting answer",
      ls_undelivered: "undelivered", ls_acknowledged: "played", ls_failed: "failed", ls_superseded: "superseded",
      attempts: "attempts", audio: "listen to the announcement", announcer: "text for the announcer", none: "—",
      d_ankle: "ankle", d_knee: "knee", d_waist: "waist", d_road_closed: "road closed",
    },
  };
  const DEPTH_COLOURS = { ankle: "#4fc3f7", knee: "#1e88e5", waist: "#0d47a1", road_closed: "#6a1b9a" };
  const LS_COLOURS = { acknowledged: "#2e7d32", sent: "#f9a825", pending: "#f9a825", undelivered: "#c62828",
    failed: "#c62828", superseded: "#78909c" };
  const data = { reports: [], officer: false, running: null, quota: null, speakers: null };
  let timer = null;

  const fw = () => window.fw;
  const r = (key) => { const lang = fw() ? fw().state.lang : "th"; return (L[lang] && L[lang][key]) || L.en[key] || key; };
  const byId = (id) => document.getElementById(id);

  function labels() {
    document.querySelectorAll("[data-rl]").forEach((node) => { node.textContent = r(node.dataset.rl); });
  }

  async function refreshReports() {
    if (!byId("report-rows")) return;
    try {
      const got = await fw().api("/api/reports?hours=72");
      data.reports = got.reports; data.officer = got.officer; data.running = got.running;
    } catch (e) { byId("reports-status").textContent = e.message; return; }
    renderReports();
    redrawMap();
    const rows = byId("station-rows");
    if (rows) overviewBadges(rows);
  }
  async function refreshQuota() {
    if (!byId("quota-body")) return;
    try { data.quota = await fw().api("/api/quota"); } catch (e) { byId("quota-body").textContent = e.message; return; }
    renderQuota();
  }
  async function refreshSpeakers() {
    if (!byId("loudspeaker-rows")) return;
    try { data.speakers = await fw().api("/api/loudspeakers"); } catch (e) {
      byId("loudspeaker-status").textContent = e.message; return;
    }
    renderSpeakers();
    redrawMap();
  }
  function refreshAll() { refreshReports(); refreshQuota(); refreshSpeakers(); }
  function redrawMap() {
    // app.js owns the map; its next draw calls our "map" hook. Draw our layer now on the current one too.
    const svg = byId("map-svg");
    if (svg && svg._fwProject) drawLayer(svg, ...svg._fwProject);
  }

  /* ------------------------------------------------------------ reports */
  async function moderate(id, action) {
    try { await fw().api(`/api/reports/${encodeURIComponent(id)}/${action}`, { method: "POST" }); }
    catch (e) { alert(e.message); }
    refreshReports();
  }
  function renderReports() {
    const body = byId("report-rows");
    if (!body) return;
    const { el, fmtTime, state } = fw();
    const status = byId("reports-status");
    status.textContent = data.running === false ? r("not_running") : !data.officer ? r("public_only")
      : !data.reports.length ? r("no_reports") : "";
    const zones = Object.fromEntries((state.zones || []).map((z) => [z.id, z]));
    const stations = Object.fromEntries((state.stations || []).map((s) => [s.id, s]));
    body.replaceChildren(...data.reports.map((rep) => {
      const zone = rep.zone && zones[rep.zone] ? fw().name(zones[rep.zone]) : rep.zone || "";
      const near = rep.near_station ? `${r("near")} ${stations[rep.near_station] ? fw().name(stations[rep.near_station])
        : rep.near_station} (${Math.round(rep.station_distance_m)} m)` : "";
      const buttons = [];
      if (data.officer && state.me.logged_in) {
        if (rep.status !== "verified") buttons.push(el("button", { type: "button", class: "rep-verify", text: r("verify"), onclick: () => moderate(rep.id, "verify") }));
        if (rep.status !== "hidden") buttons.push(el("button", { type: "button", class: "rep-hide", text: r("hide"), onclick: () => moderate(rep.id, "hide") }));
        if (rep.status === "hidden") buttons.push(el("button", { type: "button", class: "rep-reopen", text: r("reopen"), onclick: () => moderate(rep.id, "reopen") }));
      }
      const photo = rep.has_photo && data.officer
        ? el("a", { href: `/api/reports/${encodeURIComponent(rep.id)}/photo`, target: "_blank", rel: "noopener", text: r("photo") })
        : rep.has_photo ? r("has_photo") : r("none");
      return el("tr", { "data-report": rep.id, class: `rep-${rep.status}` },
        el("td", { class: "nowrap" }, fmtTime(rep.ts_s, true), el("div", { class: "sid", text: rep.id })),
        el("td", {}, el("div", { text: zone }), el("div", { class: "sid", text: rep.address || near }),
          rep.address && near ? el("div", { class: "sid", text: near }) : null),
        el("td", {}, el("span", { class: "depth-chip", style: `background:${DEPTH_COLOURS[rep.depth]}`, text: r(`d_${rep.depth}`) })),
        el("td", {}, photo),
        el("td", { class: `rep-state st-${rep.status}`, text: r(`st_${rep.status}`) }),
        el("td", { class: "nowrap" }, ...buttons));
    }));
  }
  function overviewBadges(body) {
    // verified reports within reports.near_gauge_m of a gauge are shown beside it
    const counts = {};
    for (const rep of data.reports) {
      if (rep.status === "verified" && rep.near_station) counts[rep.near_station] = (counts[rep.near_station] || 0) + 1;
    }
    body.querySelectorAll(".rep-badge").forEach((n) => n.remove());
    body.querySelectorAll("tr.station-row").forEach((tr) => {
      const n = counts[tr.dataset.station];
      if (!n) return;
      const cell = tr.querySelector(".c-station");
      if (cell) cell.append(fw().el("span", { class: "badge rep-badge", title: r("reports"), text: `${r("badge")} ${n}` }));
    });
  }

  /* ---------------------------------------------------------------- map */
  function drawLayer(svg, px, py, mk) {
    svg.querySelectorAll(".fw-residents").forEach((n) => n.remove());
    const layer = mk("g", { class: "fw-residents" });
    for (const rep of data.reports) {
      const x = px(rep.lon), y = py(rep.lat);
      if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
      const verified = rep.status === "verified";
      const dot = mk("circle", {
        cx: x, cy: y, r: 7, class: `report-dot rep-${rep.status}`, "data-report": rep.id,
        fill: verified ? DEPTH_COLOURS[rep.depth] : "#ffffff", stroke: DEPTH_COLOURS[rep.depth],
        "stroke-width": 3, "stroke-dasharray": rep.status === "hidden" ? "2 2" : "none",
        opacity: rep.status === "hidden" ? 0.45 : 1,
      });
      dot.append(mk("title", {}, `${rep.id} ${r(`d_${rep.depth}`)} · ${r(`st_${rep.status}`)} · ${fw().fmtTime(rep.ts_s, true)}`));
      layer.append(dot);
    }
    for (const c of (data.speakers && data.speakers.controllers) || []) {
      if (c.lat === null || c.lon === null || c.lat === undefined) continue;
      const x = px(c.lon), y = py(c.lat);
      const st = c.latest ? c.latest.status : "none";
      // a loudspeaker horn: drawn, not an emoji (control-room screens often lack an emoji font)
      const icon = mk("path", { d: `M${x - 9},${y - 4}h5l8,-6v20l-8,-6h-5z`, class: `speaker-icon ls-${st}`,
        "data-controller": c.id, fill: LS_COLOURS[st] || "#37474f", stroke: "#fff", "stroke-width": 1.5 });
      icon.append(mk("title", {}, `${fw().name(c)}: ${c.latest ? r(`ls_${st}`) : r("none")}`));
      layer.append(icon);
    }
    svg.append(layer);
    svg._fwProject = [px, py, mk];
  }

  /* -------------------------------------------------------------- quota */
  function renderQuota() {
    const box = byId("quota-body");
    const q = data.quota;
    if (!box || !q) return;
    const { el, fmtTime } = fw();
    if (!q.running) { box.replaceChildren(el("p", { class: "hint", text: r("not_running") })); return; }
    const nodes = [];
    if (!q.known) nodes.push(el("p", { class: "hint", text: r("unknown_quota") }));
    else if (q.limit === null) nodes.push(el("p", { text: `${r("used")} ${q.used.toLocaleString()} ${r("messages")} · ${r("no_limit")}` }));
    else {
      const share = Math.min(1, q.used / q.limit);
      nodes.push(el("p", { class: `quota-line${q.low ? " quota-low" : ""}`,
        text: `${r("used")} ${q.used.toLocaleString()} ${r("of")} ${q.limit.toLocaleString()} ${r("messages")} (${Math.round(share * 100)}%) · ${r("left")} ${q.left.toLocaleString()} · ${r("pending")} ${q.pending.toLocaleString()}` }));
      const bar = el("div", { class: "quota-bar" }, el("div", { class: `quota-fill${q.low ? " quota-low" : ""}`, style: `width:${(share * 100).toFixed(1)}%` }));
      nodes.push(bar);
      if (q.low) nodes.push(el("p", { class: "quota-warn", text: `⚠️ ${r("low")}` }));
    }
    if (q.checked_wall_s) nodes.push(el("p", { class: "sid", text: `${r("checked")} ${new Date(q.checked_wall_s * 1000).toLocaleString(fw().state.lang === "th" ? "th-TH" : "en-GB", { timeZone: "Asia/Bangkok" })}` }));
    if (q.shortfalls && q.shortfalls.length) {
      nodes.push(el("h3", { text: r("shortfall") }));
      nodes.push(el("ul", { class: "shortfalls" }, ...q.shortfalls.map((s) => el("li", { class: "quota-warn", "data-zone": s.zone,
        text: `${fmtTime(s.ts_s, true)} · ${s.zone} · ${s.needed.toLocaleString()} / ${r("left")} ${Math.max(0, s.left).toLocaleString()} → ${s.missing.toLocaleString()} ${r("missing")}` }))));
    }
    box.replaceChildren(...nodes);
  }

  /* -------------------------------------------------------- loudspeakers */
  function renderSpeakers() {
    const body = byId("loudspeaker-rows");
    const s = data.speakers;
    if (!body || !s) return;
    const { el, fmtTime } = fw();
    const status = byId("loudspeaker-status");
    status.textContent = !s.running ? r("not_running") : !s.enabled ? r("no_controllers") : s.connected ? "" : r("broker_down");
    body.replaceChildren(...(s.controllers || []).map((c) => {
      const cmd = c.latest;
      const last = cmd ? el("div", {}, el("span", { class: `chip lvl-${cmd.level}`, text: cmd.level_name }), ` ${cmd.kind} · ${fmtTime(cmd.created_s, true)}`,
        cmd.audio_url ? el("div", {}, el("a", { href: cmd.audio_url, target: "_blank", rel: "noopener", text: r("audio") }))
          : el("div", { class: "sid", text: cmd.audio_note || r("announcer") })) : r("none");
      const state = cmd ? el("span", { class: `ls-state ls-${cmd.status}`, text: r(`ls_${cmd.status}`) }) : r("none");
      return el("tr", { "data-controller": c.id, class: cmd ? `ls-row ls-${cmd.status}` : "ls-row" },
        el("td", {}, el("div", { class: "name", text: fw().name(c) }), el("span", { class: "sid", text: `${c.id} · ${c.zones.join(", ")}` })),
        el("td", {}, last),
        el("td", {}, state, cmd ? el("div", { class: "sid", text: `${cmd.attempts} ${r("attempts")}` }) : null));
    }));
  }

  window.fwHooks = window.fwHooks || [];
  window.fwHooks.push({
    map: drawLayer,
    overview: overviewBadges,
    events(es) {
      es.addEventListener("report", () => refreshReports());
      es.addEventListener("quota", () => refreshQuota());
      es.addEventListener("loudspeaker", () => refreshSpeakers());
      es.addEventListener("alert", () => refreshQuota());
    },
    render() { labels(); renderReports(); renderQuota(); renderSpeakers(); },
    refresh() {
      labels(); refreshAll();
      if (!timer) timer = setInterval(refreshAll, 30000); // the same slow safety net as app.js
    },
  });
})();
