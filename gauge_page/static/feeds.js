/* floodwatch live page: external stations and their feeds (loaded after app.js).
 *
 * Another agency's gauges, a neighbouring site's, a dam's release and predicted
 * series (a tide table) are forecast inputs, not this town's alarms: they get
 * their own panel, marked external with who runs them, and instead of a node's
 * "online"/"silent" the health of the feed that brings them (last successful
 * fetch, newest data time, lag, errors). Uses app.js's helpers (t, el, fmtTime,
 * fmtAge, name, api, state) and listens for its "fw:stations" event.
 */
"use strict";

Object.assign(I18N.th, {
  external_title: "สถานีภายนอก (ต้นน้ำ เขื่อน ปากแม่น้ำ)",
  external_note: "ข้อมูลจากหน่วยงานอื่นหรือเทศบาลข้างเคียง ใช้ในการพยากรณ์ ไม่ใช้แจ้งเตือนประชาชนโดยตรง",
  feeds_title: "แหล่งข้อมูลภายนอก", col_value: "ค่าล่าสุด", col_source: "แหล่งข้อมูล",
  external: "ภายนอก", predicted_series: "ค่าพยากรณ์", predicted_until: "พยากรณ์ถึง", prediction_ended: "ค่าพยากรณ์หมดแล้ว",
  feed_ok: "ปกติ", feed_degraded: "บางสถานีขาดหาย", feed_stale: "ข้อมูลเก่า", feed_failing: "ดึงข้อมูลไม่สำเร็จ",
  feed_never: "ยังไม่เคยดึงข้อมูล", feed_disabled: "ปิดใช้งาน", last_fetch: "ดึงล่าสุด", lag: "ช้ากว่าปัจจุบัน",
  missing_in_answer: "ไม่มีในข้อมูลรอบล่าสุด", stored_total: "บันทึกแล้ว", m3s: "ลบ.ม./วินาที", via: "ผ่าน",
  no_external: "ไม่มีสถานีภายนอก", kind_feed_down: "แหล่งข้อมูลขาดหาย", kind_feed_up: "แหล่งข้อมูลกลับมา",
});
Object.assign(I18N.en, {
  external_title: "External stations (upstream, dams, river mouth)",
  external_note: "Other agencies' and neighbouring sites' data: forecast inputs, never a resident alert by themselves",
  feeds_title: "External feeds", col_value: "Latest", col_source: "Source",
  external: "external", predicted_series: "predicted", predicted_until: "predicted until", prediction_ended: "prediction has run out",
  feed_ok: "ok", feed_degraded: "a station is missing", feed_stale: "stale data", feed_failing: "failing",
  feed_never: "not fetched yet", feed_disabled: "disabled", last_fetch: "last fetch", lag: "behind now by",
  missing_in_answer: "missing from the last answer", stored_total: "stored", m3s: "m³/s", via: "via",
  no_external: "No external stations", kind_feed_down: "feed down", kind_feed_up: "feed back",
});

const fwExternal = (() => {
  let feeds = [];
  let lastFetchMs = 0;

  function valueBox(row) {
    const predicted = row.series === "predicted";
    if (row.kind === "discharge") {
      return el("div", { class: `lvlbox lvl-0 ext-value${row.stale ? " stale" : ""}` },
        el("span", { class: "level", text: row.discharge_m3_s === null ? "–" : row.discharge_m3_s.toFixed(0) }),
        el("span", { class: "cls", text: t("m3s") }));
    }
    const thr = row.levels ? row.levels.map((v) => v.toFixed(2)).join(" / ") : "";
    return el("div", { class: `lvlbox lvl-${row.level_class} ext-value${predicted ? " predicted" : ""}` },
      el("span", { class: "level", text: fmtM(row.level_m) }),
      el("span", { class: "cls", text: predicted ? t("predicted_series") : t(`lvl_${row.level_class}`) }),
      el("span", { class: "thr", text: thr }));
  }

  function stateChip(stateWord) {
    return el("span", { class: `feed-state feed-${stateWord || "never"}`, "data-feed-state": stateWord || "never",
      text: t(`feed_${stateWord || "never"}`) });
  }

  function sourceCell(row) {
    const fh = row.feed_health;
    if (!fh) return el("td", { class: "c-source" }, el("span", { class: "sid", text: row.feed || "–" }));
    const parts = [el("div", {}, `${t("via")} ${name({ name_th: fh.name_th, name_en: fh.name_en, id: fh.feed })} `, stateChip(fh.state))];
    parts.push(el("div", { class: "sid", text: `${t("last_fetch")} ${fh.last_success_s ? fmtAge(state.nowS - fh.last_success_s) : "–"}` }));
    if (row.series !== "predicted" && fh.lag_s !== null && fh.lag_s !== undefined) {
      parts.push(el("div", { class: "sid", text: `${t("lag")} ${fmtAge(fh.lag_s).replace(` ${t("ago")}`, "")}` }));
    }
    if (fh.missing) parts.push(el("div", { class: "feed-problem", text: t("missing_in_answer") }));
    if (fh.state === "failing" && fh.last_error) parts.push(el("div", { class: "feed-problem", text: fh.last_error }));
    return el("td", { class: "c-source" }, ...parts);
  }

  function timeCell(row) {
    if (row.series === "predicted") {
      const until = row.predicted_until_s;
      const text = until === null || until < state.nowS ? t("prediction_ended") : `${t("predicted_until")} ${fmtTime(until, true)}`;
      return el("td", { class: "c-age" }, el("div", { text }));
    }
    return el("td", { class: "c-age nowrap", title: fmtTime(row.ts_s, true) },
      row.ts_s ? el("div", { text: fmtTime(row.ts_s, true) }) : t("no_data"),
      row.ts_s ? el("div", { class: "sid", text: fmtAge(row.data_age_s) }) : null);
  }

  function renderRows() {
    const body = document.querySelector("#external-rows");
    if (!body) return;
    const rows = (state.allStations || []).filter((s) => s.external);
    const panel = document.querySelector("#external");
    if (panel) panel.hidden = rows.length === 0 && feeds.length === 0;
    body.replaceChildren(...rows.map((row) => el("tr", {
      class: `station-row external-row${row.stale ? " stale" : ""}`, "data-station": row.id,
      "data-series": row.series, "data-kind": row.kind,
      onclick: OFFICER_VIEW ? () => { location.hash = `station=${row.id}`; } : null,
    },
      el("td", { class: "c-station" },
        el("div", { class: "name", text: name(row) }),
        el("span", { class: "sid", text: row.id }),
        el("span", { class: "badge external", text: `${t("external")}${row.agency ? " · " + row.agency : ""}` }),
        row.series === "predicted" ? el("span", { class: "badge predicted", text: t("predicted_series") }) : null),
      el("td", { class: "c-level" }, valueBox(row)),
      timeCell(row),
      sourceCell(row))));
  }

  function renderFeeds() {
    const list = document.querySelector("#feed-list");
    if (!list) return;
    list.replaceChildren(...feeds.map((f) => {
      const err = f.state === "failing" && f.last_error ? el("div", { class: "feed-problem", text: `${f.last_error.reason}: ${f.last_error.detail}` }) : null;
      const problems = (f.problems || []).slice(0, 3).map((p) => el("li", { class: "sid", text: `${fmtTime(p.ts_s, true)} ${p.reason}: ${p.detail}` }));
      return el("li", { class: "feed", "data-feed": f.id },
        el("span", { class: "name", text: name({ name_th: f.name_th, name_en: f.name_en, id: f.id }) }), " ",
        stateChip(f.state), " ",
        el("span", { class: "sid", text: `${f.kind} · ${t("last_fetch")} ${f.last_success_s ? fmtTime(f.last_success_s, true) : "–"} · ${t("stored_total")} ${f.stored_total}` }),
        err, problems.length ? el("ul", { class: "feed-problems" }, ...problems) : null);
    }));
  }

  async function refreshFeeds() {
    // The stations' rows carry what the table needs; the feed list is refetched at most every few seconds.
    if (Date.now() - lastFetchMs < 3000) return;
    lastFetchMs = Date.now();
    try { feeds = (await api("/api/feeds")).feeds || []; } catch (e) { return; }
    renderFeeds();
    renderRows();
  }

  document.addEventListener("fw:stations", () => { renderRows(); renderFeeds(); refreshFeeds(); });
  return { valueBox, renderRows };
})();
window.fwExternal = fwExternal;
