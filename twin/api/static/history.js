// The history of the last hours' alerts (GET /api/alerts/history): newest first, one row per alert with its
// level, hazard, place, raised and cancelled times and how long it lasted, and under it the alert's timeline
// (raised, each level change, updates, acknowledgements, units on scene, cancelled) in a <details>.
//
// Clicking a row (or Enter / Space on it) calls onSelect(identifier); opening the timeline does not. Rendering
// again (the page refreshes the list every few seconds) keeps the timelines that were open and the scroll position.

import { levelLabel, durationText, shanghaiTime } from "./levels.js";
import { el } from "./dom.js";

export const HAZARD_NAMES = {
  crowd: ["Crowd", "人群"], crowd_forecast: ["Crowd forecast", "人群预测"], flood: ["Flood", "内涝"],
  rain: ["Rainstorm", "暴雨"], traffic: ["Traffic", "交通"],
};
export const KIND_NAMES = {
  raised: ["raised", "发布"], level: ["level", "级别变化"], updated: ["updated", "更新"],
  acknowledged: ["acknowledged", "确认"], on_scene: ["on scene", "到场"], cancelled: ["cancelled", "解除"],
};
const WORDS = {
  raised: ["raised", "发布"], cancelled: ["cancelled", "解除"], active: ["active", "进行中"],
  timeline: ["timeline", "时间线"], empty: ["No alerts in this period", "此时段无预警"],
  truncated: ["Only the newest alerts are listed", "仅列出最新的预警"],
};

// Text in the page's language: "en", "zh", or both ("English · 中文") for anything else.
function say([en, zh], lang) {
  if (lang === "en") return en;
  if (lang === "zh") return zh;
  return `${en} · ${zh}`;
}

const levelClass = (level) => `level-${level >= 0 && level <= 4 ? Math.trunc(level) : "none"}`;

// "raised 21:03 · cancelled 21:40 · 37 min" (cancelled), "raised 21:03 · active · 42 min" (still open: lasted
// until the end of the period).
function timesText(a, until, lang) {
  const raised = `${say(WORDS.raised, lang)} ${shanghaiTime(a.raised_at, false)}`;
  const open = a.state !== "cancelled" || a.cancelled_at == null;
  const end = open ? until : a.cancelled_at;
  const lasted = a.raised_at != null && end != null ? durationText(end - a.raised_at) : "–";
  const middle = open ? say(WORDS.active, lang) : `${say(WORDS.cancelled, lang)} ${shanghaiTime(a.cancelled_at, false)}`;
  return `${raised} · ${middle} · ${lasted}`;
}

function timelineEntry(entry, lang) {
  const li = el("li", `hist-ev hist-ev-${entry.kind}`);
  li.append(el("time", "hist-ev-t", shanghaiTime(entry.t)), " ");
  li.append(el("span", "hist-ev-kind", say(KIND_NAMES[entry.kind] || [entry.kind, entry.kind], lang)));
  if (entry.level != null && entry.level >= 0) {
    li.append(" ", el("span", `hist-chip ${levelClass(entry.level)}`, levelLabel(entry.level, lang)));
  }
  if (entry.actor) li.append(" ", el("span", "hist-ev-actor", entry.actor));
  if (entry.text) li.append(" ", el("span", "hist-ev-text", entry.text));
  return li;
}

function alertItem(a, until, lang, open) {
  const li = el("li", `hist-item ${levelClass(a.level)} hist-${a.state === "cancelled" ? "cancelled" : "active"}`);
  li.dataset.id = a.identifier;
  const row = el("div", "hist-row");
  row.tabIndex = 0;
  row.setAttribute("role", "button");
  const place = a.place_name || a.areaDesc || a.place || "–";
  row.setAttribute("aria-label", `${levelLabel(a.level, "en")} ${a.hazard} alert, ${place}`);
  row.append(
    el("span", `hist-chip ${levelClass(a.level)}`, levelLabel(a.level, lang)),
    el("span", "hist-hazard", say(HAZARD_NAMES[a.hazard] || [a.hazard, a.hazard], lang)),
    el("span", "hist-place", place),
    el("span", "hist-times", timesText(a, until, lang)),
  );
  row.querySelector(".hist-place").title = a.areaDesc || place;
  li.append(row);
  const timeline = a.timeline || [];
  const details = el("details", "hist-details");
  details.open = Boolean(open);
  details.append(el("summary", "hist-summary", `${say(WORDS.timeline, lang)} (${timeline.length})`));
  const ol = el("ol", "hist-timeline");
  for (const entry of [...timeline].sort((x, y) => (x.t ?? 0) - (y.t ?? 0))) ol.append(timelineEntry(entry, lang));
  details.append(ol);
  li.append(details);
  return li;
}

// el: the container; body: GET /api/alerts/history {since, until, alerts: [...], truncated?}; lang: "zh", "en"
// or undefined (both); onSelect(identifier) on a click on an alert's row.
export function renderHistory(el_, body, { lang, onSelect } = {}) {
  el_.classList.add("hist");
  el_.histSelect = onSelect || null;
  if (!el_.dataset.histBound) {
    // one listener for every render: the rows are replaced, the container stays
    el_.dataset.histBound = "true";
    const pick = (e) => {
      const row = e.target.closest(".hist-row");
      const item = row && row.closest(".hist-item");
      if (item && el_.histSelect) el_.histSelect(item.dataset.id);
    };
    el_.addEventListener("click", pick);
    el_.addEventListener("keydown", (e) => {
      if ((e.key === "Enter" || e.key === " ") && e.target.classList?.contains("hist-row")) {
        e.preventDefault();
        pick(e);
      }
    });
  }
  // what the reader had before this render (a refresh every few seconds): the timelines left open, by alert id,
  // and how far the list was scrolled
  const open = new Set();
  for (const item of el_.querySelectorAll(".hist-item")) {
    if (item.querySelector(".hist-details")?.open) open.add(item.dataset.id);
  }
  const scrolled = el_.scrollTop;
  const alerts = [...(body?.alerts || [])].sort((a, b) => (b.raised_at ?? 0) - (a.raised_at ?? 0));
  const parts = [];
  if (!alerts.length) {
    const period = body?.since != null && body?.until != null
      ? ` (${shanghaiTime(body.since, false)} – ${shanghaiTime(body.until, false)})` : "";
    parts.push(el("p", "hist-empty", say(WORDS.empty, lang) + period));
  } else {
    const ol = el("ol", "hist-list");
    for (const a of alerts) ol.append(alertItem(a, body.until, lang, open.has(a.identifier)));
    parts.push(ol);
  }
  if (body?.truncated) parts.push(el("p", "hist-truncated", `${say(WORDS.truncated, lang)} (${alerts.length})`));
  el_.replaceChildren(...parts);
  el_.scrollTop = scrolled;
}
