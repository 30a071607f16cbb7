/* "How well did we warn": each past flood event at the site, when the first
 * warning of its level went out, the lead, and the warnings that came to
 * nothing. Data: GET /api/verification (docs/page.md, docs/verification.md).
 *
 * Loaded after app.js and uses its helpers ($, el, t, state, api, fmtTime,
 * zoneShort, name); it adds its own words to app.js's dictionary and needs no
 * hook there: it listens to the language button itself.
 */
"use strict";

(() => {
  const WORDS = {
    th: {
      nav_warned: "ผลการเตือนภัย", warned_title: "เราเตือนได้ดีแค่ไหน",
      warned_intro: "เหตุการณ์ที่ผ่านมา (น้ำถึงระดับหลังจากต่ำกว่า 24 ชม.) เทียบกับการแจ้งเตือนที่ส่งถึงประชาชน",
      warned_days: "ย้อนหลัง", warned_zone: "พื้นที่", warned_events: "เหตุการณ์", warned_in_time: "เตือนทัน",
      warned_median_lead: "เตือนล่วงหน้า (มัธยฐาน)", warned_false: "เตือนแล้วไม่เกิด",
      warned_when: "น้ำถึงระดับ", warned_level: "ระดับ", warned_station: "สถานี", warned_first: "เตือนครั้งแรก",
      warned_lead: "ล่วงหน้า", warned_missed: "ไม่ได้เตือน", warned_late: "ช้า", warned_none: "ไม่มีเหตุการณ์ในช่วงนี้",
      warned_no_false: "ไม่มีการเตือนที่ไม่เกิดเหตุ", warned_false_title: "การเตือนที่ไม่เกิดเหตุ (ภายใน 24 ชม.)",
      warned_events_title: "เหตุการณ์", warned_no_alerts: "ระบบแจ้งเตือนไม่ได้ทำงานในโปรเซสนี้: แสดงเฉพาะเหตุการณ์",
      warned_kind_observed: "ระดับที่วัดได้", warned_kind_forecast: "คาดการณ์", warned_kind_rise: "น้ำขึ้นเร็ว",
      warned_unscored: "ยังตัดสินไม่ได้", warned_kind: "เหตุผล",
    },
    en: {
      nav_warned: "How well we warned", warned_title: "How well did we warn",
      warned_intro: "Past events (the water reaching a level after 24 h below it) against the warnings residents got",
      warned_days: "last", warned_zone: "Zone", warned_events: "Events", warned_in_time: "Warned",
      warned_median_lead: "Median lead", warned_false: "For nothing",
      warned_when: "Water reached", warned_level: "Level", warned_station: "Station", warned_first: "First warning",
      warned_lead: "Lead", warned_missed: "not warned", warned_late: "late", warned_none: "No events in this period",
      warned_no_false: "No warning came to nothing", warned_false_title: "Warnings that came to nothing (within 24 h)",
      warned_events_title: "Events", warned_no_alerts: "The alert service is not running in this process: events only",
      warned_kind_observed: "observed", warned_kind_forecast: "forecast", warned_kind_rise: "fast rise",
      warned_unscored: "too recent to judge", warned_kind: "Why",
    },
  };
  Object.assign(I18N.th, WORDS.th);
  Object.assign(I18N.en, WORDS.en);

  const view = { data: null, days: 90, error: null };

  const fmtLead = (h) => (h === null || h === undefined ? "–" : `${h >= 0 ? "" : "−"}${Math.abs(h).toFixed(1)} ${t("h")}`);
  const levelChip = (k) => el("span", { class: `chip lvl-${k}`, text: t(`lvl_${k}`) });

  async function refreshWarned() {
    try {
      view.data = await api(`/api/verification?days=${view.days}`);
      view.error = null;
    } catch (e) {
      view.error = e.message;
    }
    renderWarned();
  }

  function zoneSummary(zone) {
    const events = zone.events.length;
    const warned = zone.events.filter((e) => e.warned).length;
    const leads = zone.events.filter((e) => e.lead_h !== null).map((e) => e.lead_h).sort((a, b) => a - b);
    const median = leads.length ? (leads.length % 2 ? leads[(leads.length - 1) / 2]
      : (leads[leads.length / 2 - 1] + leads[leads.length / 2]) / 2) : null;
    return el("tr", { "data-zone": zone.zone_id },
      el("td", { class: "nowrap", text: zoneShort(zone.zone_id), title: name(zone) }),
      el("td", { class: "num", text: String(events) }),
      el("td", { class: `num${warned < events ? " missed" : ""}`, text: `${warned} / ${events}` }),
      el("td", { class: "num", text: fmtLead(median) }),
      el("td", { class: `num${zone.false_warnings.length ? " false" : ""}`, text: String(zone.false_warnings.length) }));
  }

  function eventRow(zone, ev) {
    const first = ev.warned
      ? el("span", {}, fmtTime(ev.first_warning_s, true), " ",
        el("span", { class: "sid", text: `${t(`warned_kind_${ev.first_warning_kind}`)} · ${t(`lvl_${ev.first_warning_level}`)}` }))
      : el("span", { class: "missed", text: t("warned_missed") });
    const late = ev.lead_h !== null && ev.lead_h < 0 ? el("span", { class: "badge", text: t("warned_late") }) : null;
    return el("tr", { class: ev.warned ? "event warned" : "event missed", "data-zone": zone.zone_id, "data-level": ev.level },
      el("td", { class: "nowrap", text: fmtTime(ev.crossing_s, true) }),
      el("td", { class: "nowrap", text: zoneShort(zone.zone_id), title: name(zone) }),
      el("td", {}, levelChip(ev.level)),
      el("td", { class: "nowrap", text: ev.station_id }),
      el("td", {}, first),
      el("td", { class: "num lead", text: fmtLead(ev.lead_h) }, late));
  }

  function falseRow(zone, f) {
    return el("tr", { class: "false-warning", "data-zone": zone.zone_id, "data-level": f.level },
      el("td", { class: "nowrap", text: fmtTime(f.ts_s, true) }),
      el("td", { class: "nowrap", text: zoneShort(zone.zone_id), title: name(zone) }),
      el("td", {}, levelChip(f.level)),
      el("td", { text: t(`warned_kind_${f.kind}`) }),
      el("td", { class: "nowrap", text: f.station_id || "" }));
  }

  function renderWarned() {
    const panel = $("#warned");
    if (!panel) return;
    panel.querySelectorAll("[data-i18n]").forEach((node) => { node.textContent = t(node.dataset.i18n); });
    const nav = document.querySelector('.tabs a[href="#warned"]');
    if (nav) nav.textContent = t("nav_warned");
    const status = $("#warned-status");
    const data = view.data;
    if (view.error) { status.textContent = view.error; return; }
    if (!data) return;
    status.textContent = data.alerts_running ? "" : t("warned_no_alerts");
    $("#warned-zones").replaceChildren(...data.zones.filter((z) => z.levels.length).map(zoneSummary));
    const events = data.zones.flatMap((z) => z.events.map((e) => [z, e])).sort((a, b) => b[1].crossing_s - a[1].crossing_s);
    $("#warned-events").replaceChildren(...(events.length ? events.map(([z, e]) => eventRow(z, e))
      : [el("tr", {}, el("td", { colspan: "6", class: "hint", text: t("warned_none") }))]));
    const falses = data.zones.flatMap((z) => z.false_warnings.map((f) => [z, f])).sort((a, b) => b[1].ts_s - a[1].ts_s);
    $("#warned-false").replaceChildren(...(falses.length ? falses.map(([z, f]) => falseRow(z, f))
      : [el("tr", {}, el("td", { colspan: "5", class: "hint", text: t("warned_no_false") }))]));
    document.querySelectorAll("#warned-range [data-days]").forEach((b) => b.classList.toggle("active", Number(b.dataset.days) === view.days));
  }

  document.querySelectorAll("#warned-range [data-days]").forEach((b) => b.addEventListener("click", () => {
    view.days = Number(b.dataset.days);
    refreshWarned();
  }));
  const toggle = $("#lang-toggle");
  if (toggle) toggle.addEventListener("click", renderWarned); // app.js's own handler has switched state.lang
  window.refreshWarned = refreshWarned;
  renderWarned();
  refreshWarned();
  // Events and warnings change slowly: a refresh every minute is plenty.
  setInterval(refreshWarned, 60000);
})();
