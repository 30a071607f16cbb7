/* floodwatch page: export readings, forecasts and the alert log as CSV or JSON.
 *
 * The form builds a link to /api/export/{kind}.{fmt} (the server streams the file,
 * in Bangkok time and the page's units) and clicks it, so the browser downloads it
 * like any file. app.js calls floodwatchExport.render(state, t) when the stations,
 * the zones or the language change.
 */
"use strict";

window.floodwatchExport = (() => {
  const TEXT = {
    th: { export: "ส่งออกข้อมูล", what: "ข้อมูล", readings: "ค่าที่วัดได้", forecasts: "ค่าคาดการณ์",
      alerts: "บันทึกการแจ้งเตือน", where: "สถานีหรือพื้นที่", all: "ทุกสถานี", from: "ตั้งแต่วันที่",
      to: "ถึงวันที่", format: "รูปแบบ", be: "ปี พ.ศ.", download: "ดาวน์โหลด", zone: "พื้นที่",
      hint: "เวลาตามเวลาประเทศไทย ระดับน้ำเป็นเมตร รทก. ฝนเป็นมิลลิเมตร" },
    en: { export: "Export data", what: "Data", readings: "Readings", forecasts: "Forecasts",
      alerts: "Alert log", where: "Station or zone", all: "Every station", from: "From",
      to: "To", format: "Format", be: "Buddhist-era years", download: "Download", zone: "Zone",
      hint: "Bangkok time; levels in m above mean sea level, rain in mm" },
  };
  let built = false;
  let lang = "th";
  const tx = (key) => (TEXT[lang] || TEXT.en)[key];
  const dateIn = (offsetDays) => {
    const d = new Date(Date.now() + offsetDays * 86400000);
    return new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Bangkok" }).format(d);
  };

  function exportUrl() {
    const form = document.getElementById("export-form");
    const kind = form.elements.kind.value;
    const fmt = form.elements.fmt.value;
    const params = new URLSearchParams();
    const where = form.elements.where.value;
    if (where.startsWith("zone:")) params.append("zone", where.slice(5));
    else if (where) params.append("station", where);
    if (form.elements.start.value) params.set("start", form.elements.start.value);
    if (form.elements.end.value) params.set("end", form.elements.end.value);
    if (form.elements.be.checked) params.set("era", "be");
    return `/api/export/${kind}.${fmt}?${params.toString()}`;
  }

  function build(section) {
    section.innerHTML = "";
    const form = document.createElement("form");
    form.id = "export-form";
    form.innerHTML = `
      <h2 data-export="export"></h2>
      <label><span data-export="what"></span>
        <select name="kind" id="export-kind">
          <option value="readings" data-export="readings"></option>
          <option value="forecasts" data-export="forecasts"></option>
          <option value="alerts" data-export="alerts"></option>
        </select></label>
      <label><span data-export="where"></span><select name="where" id="export-where"></select></label>
      <label><span data-export="from"></span><input type="date" name="start" id="export-start"></label>
      <label><span data-export="to"></span><input type="date" name="end" id="export-end"></label>
      <label><span data-export="format"></span>
        <select name="fmt" id="export-fmt"><option value="csv">CSV</option><option value="json">JSON</option></select></label>
      <label class="inline"><input type="checkbox" name="be" id="export-be"> <span data-export="be"></span></label>
      <button type="submit" id="export-download" data-export="download"></button>
      <p class="hint" data-export="hint"></p>`;
    form.elements.start.value = dateIn(-7);
    form.elements.end.value = dateIn(0);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const link = document.createElement("a");
      link.href = exportUrl();
      link.download = "";
      document.body.append(link);
      link.click();
      link.remove();
    });
    section.append(form);
    built = true;
  }

  function render(state) {
    const section = document.getElementById("export");
    if (!section) return;
    if (!built) build(section);
    lang = state.lang;
    section.querySelectorAll("[data-export]").forEach((node) => { node.textContent = tx(node.dataset.export); });
    const where = document.getElementById("export-where");
    const keep = where.value;
    where.innerHTML = "";
    const add = (value, label) => { const o = document.createElement("option"); o.value = value; o.textContent = label; where.append(o); };
    add("", tx("all"));
    for (const s of state.stations || []) add(s.id, `${s.id} ${lang === "th" ? s.name_th : s.name_en}`);
    for (const z of state.zones || []) add(`zone:${z.id}`, `${tx("zone")}: ${lang === "th" ? z.name_th : z.name_en}`);
    where.value = [...where.options].some((o) => o.value === keep) ? keep : "";
  }

  return { render, exportUrl };
})();
