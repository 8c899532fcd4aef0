// The HTML around the map: alert list (filters, sort), system figures, legend, point read-out, notices.

import { HELD_LAYERS, isHeld } from "./held.js";
import { LEVEL_LABELS } from "./links.js";
import { HAZARD_LETTER, isForecast } from "./overlays.js";
import { el } from "./dom.js";

const SHANGHAI = "Asia/Shanghai";
const clockFormat = new Intl.DateTimeFormat("en-GB", {
  timeZone: SHANGHAI, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});
const dateFormat = new Intl.DateTimeFormat("en-CA", { timeZone: SHANGHAI, year: "numeric", month: "2-digit", day: "2-digit" });
export const HAZARD_NAME = {
  crowd: "Crowd", crowd_forecast: "Crowd forecast", flood: "Flood", rain: "Rainstorm", traffic: "Traffic",
};
export const FORECAST_TAG = "Forecast · 预测";
export const HELD_LABEL = "no data, level held · 无数据，等级保持";
// Why a write button is disabled on a page opened without the API token (issue 18).
export const READ_ONLY = "Read-only · 只读: open the #token=… link to act";

export const clockTime = (t) => (t == null ? "–" : clockFormat.format(new Date(t * 1000)));
export const twinDateTime = (t) => (t == null ? "–" : `${dateFormat.format(new Date(t * 1000))} ${clockTime(t)}`);

export function duration(seconds) {
  if (seconds == null || !isFinite(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

// "a, b, c +4": the first few names and how many more.
function listed(names, shown) {
  const head = names.slice(0, shown).join(", ");
  return names.length > shown ? `${head} +${names.length - shown}` : head;
}

// Who acknowledged an alert, operators before field units.
function operatorsFirst(p) {
  const operators = new Set((p.acks || []).filter((a) => a.kind === "operator").map((a) => a.actor));
  return [...p.acknowledged_by].sort((a, b) => operators.has(b) - operators.has(a));
}

// What a forecast alert expects, in English and Chinese: "expected to reach 5.3 person/m² in 5 min · 预计
// 5 分钟内达到 5.3 人/m²" from its CAP parameters expectedDensity ("5.30 person/m2") and
// expectedInMinutes ("5"); its headline when it has no such parameters.
export function expectedText(p) {
  const params = p.parameters || {};
  const match = /^\s*([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)\s*(.*)$/i.exec(params.expectedDensity || "");
  const minutes = Number.parseFloat(params.expectedInMinutes);
  if (!match || !Number.isFinite(minutes)) return p.headline || "";
  const value = Number(match[1]).toFixed(1);
  const unit = match[2].trim() || "person/m2";
  const en = unit.replace(/m2$/, "m²");
  const zh = unit === "person/m2" ? "人/m²" : en;
  const min = minutes < 1 ? "< 1" : String(Math.round(minutes));
  return `expected to reach ${value} ${en} in ${min} min · 预计 ${min} 分钟内达到 ${value} ${zh}`;
}

// Most urgent first: delivered before suppressed (silenced, inhibited, grouped), then level, then observed
// before forecast, then unacknowledged, then the newest.
export function urgency(a, b) {
  const pa = a.properties;
  const pb = b.properties;
  return Boolean(pa.suppressed) - Boolean(pb.suppressed) || pb.level - pa.level || isForecast(pa) - isForecast(pb) ||
    (pa.acknowledged_by.length > 0) - (pb.acknowledged_by.length > 0) ||
    (pb.raised_at ?? 0) - (pa.raised_at ?? 0);
}

// The alert list's filter (hazard, lowest level, place text) and order ("level": most urgent first, "newest",
// "place": by place name), as the filter row sets them.
export const NO_FILTER = { hazard: "", level: 0, place: "", sort: "level" };

// The name an alert's place is sorted and searched by.
const placeOf = (p) => p.place_name || p.area_desc || p.place || "";

export function matchesFilter(p, filter) {
  if (filter.hazard && p.hazard !== filter.hazard && !(filter.hazard === "crowd" && p.hazard === "crowd_forecast")) {
    return false;
  }
  if (filter.level && !(p.level >= filter.level)) return false;
  const text = filter.place.trim().toLowerCase();
  if (!text) return true;
  return [p.place_name, p.area_desc, p.headline, p.headline_zh, p.place].filter(Boolean).join(" ").toLowerCase()
    .includes(text);
}

export function alertOrder(sort) {
  if (sort === "newest") return (a, b) => (b.properties.raised_at ?? 0) - (a.properties.raised_at ?? 0) || urgency(a, b);
  if (sort === "place") {
    return (a, b) => placeOf(a.properties).localeCompare(placeOf(b.properties), "zh-CN") || urgency(a, b);
  }
  return urgency;
}

// ------------------------------------------------------------------ values, trends and sparklines
// A unit as read: "person/m2" -> "person/m²".
export const unitText = (unit) => (unit || "").replace(/m2\b/g, "m²");
const VALUE_DIGITS = { "person/m2": 2, m: 2, "km/h": 0, mm: 1 };

// "4.60 person/m²" of an alert's value (its hazard's unit), "" without one.
export function valueText(value, unit) {
  if (value == null || !Number.isFinite(value)) return "";
  const digits = VALUE_DIGITS[unit] ?? 2;
  return `${value.toFixed(digits)} ${unitText(unit)}`.trim();
}

const TREND_WORD = { "↑": "rising · 上升", "↓": "falling · 下降", "→": "steady · 平稳" };
const TREND_CLASS = { "↑": "rising", "↓": "falling", "→": "steady" };

// Why an alert is not delivered to field units, as its card's badge says it.
export const SUPPRESSED_BADGE = {
  silence: "silenced · 静默", inhibition: "inhibited · 抑制", storm: "grouped · 合并",
};

export const SPARK_W = 96;
export const SPARK_H = 30;
const SPARK_WINDOW_S = 1800; // the last 30 minutes
const SVG_NS = "http://www.w3.org/2000/svg";

function sparklineElement() {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", "sparkline");
  svg.setAttribute("viewBox", `0 0 ${SPARK_W} ${SPARK_H}`);
  svg.setAttribute("width", String(SPARK_W));
  svg.setAttribute("height", String(SPARK_H));
  svg.setAttribute("role", "img");
  for (const name of ["polyline", "circle", "title"]) svg.append(document.createElementNS(SVG_NS, name));
  svg.querySelector("circle").setAttribute("r", "2.2");
  return svg;
}

// Points of a sparkline of [[t, value], ...]: time across the last 30 minutes up to the newest point, values
// between their min and max (a flat line in the middle when they are all equal). Returns "x,y x,y ...".
export function sparkPoints(history) {
  if (!history.length) return "";
  const tEnd = history[history.length - 1][0];
  const values = history.map(([, v]) => v);
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const pad = 3;
  return history.map(([t, v]) => {
    const x = SPARK_W - ((tEnd - t) / SPARK_WINDOW_S) * SPARK_W;
    const y = hi > lo ? pad + (1 - (v - lo) / (hi - lo)) * (SPARK_H - 2 * pad) : SPARK_H / 2;
    return `${Math.max(0, x).toFixed(1)},${y.toFixed(1)}`;
  }).join(" ");
}

function drawSparkline(svg, history, unit) {
  const points = sparkPoints(history);
  svg.querySelector("polyline").setAttribute("points", points);
  svg.dataset.points = String(history.length);
  const last = points.split(" ").pop();
  const circle = svg.querySelector("circle");
  circle.style.display = last ? "" : "none";
  if (last) {
    const [cx, cy] = last.split(",");
    circle.setAttribute("cx", cx);
    circle.setAttribute("cy", cy);
  }
  svg.style.visibility = history.length ? "" : "hidden";
  const values = history.map(([, v]) => v);
  svg.querySelector("title").textContent = history.length
    ? `last 30 min · 近30分钟: ${valueText(Math.min(...values), unit)} – ${valueText(Math.max(...values), unit)}`
    : "";
}

// The parts of a card that change every tick: value, trend arrow, peak, sparkline, suppressed badge.
function fillLive(item, p) {
  const f = item.f;
  const value = valueText(p.value, p.unit);
  f.value.textContent = value || "no value yet";
  f.value.classList.toggle("none", !value);
  const arrow = value && p.trend_arrow ? p.trend_arrow : "";
  f.arrow.textContent = arrow;
  f.arrow.className = `trend-arrow ${TREND_CLASS[arrow] || ""}`.trim();
  const slope = typeof p.trend !== "number" ? "" : `, ${p.trend >= 0 ? "+" : ""}${p.trend.toFixed(2)} ${unitText(p.unit)}/min`;
  f.arrow.title = arrow ? `${TREND_WORD[arrow]}${slope} (last 5 min)` : "";
  const peak = valueText(p.peak, p.unit);
  const peakNumber = peak.split(" ")[0];
  f.peak.textContent = peak ? `peak ${peakNumber}${p.peak_at != null ? " at " + clockTime(p.peak_at).slice(0, 5) : ""}` : "";
  f.peak.title = peak ? `peak · 峰值 ${peak}${p.peak_at != null ? " at " + twinDateTime(p.peak_at) : ""}` : "";
  drawSparkline(f.spark, (p.history || []).filter(([t, v]) => Number.isFinite(t) && Number.isFinite(v)), p.unit);
  const s = p.suppressed;
  item.li.classList.toggle("suppressed", Boolean(s));
  f.badge.hidden = !s;
  f.badge.textContent = s ? SUPPRESSED_BADGE[s.by] || `${s.by} · 抑制` : "";
  f.badge.dataset.by = s ? s.by : "";
  f.badge.title = s ? `Not delivered to field units: ${s.reason || s.by}${s.id ? ` (${s.id})` : ""}` : "";
}

// ------------------------------------------------------------------ alert list
export class AlertList {
  constructor(root, onAck, onSelect, onSilence) {
    this.list = root.querySelector("#alert-list");
    this.empty = root.querySelector("#alert-empty");
    this.count = root.querySelector("#alert-count");
    this.filterLine = root.querySelector("#filter-line");
    this.items = new Map(); // id -> {li, fields, key}
    this.selected = null;
    this.filter = { ...NO_FILTER };
    this.list.addEventListener("click", (e) => {
      const li = e.target.closest("li[data-id]");
      if (!li) return;
      if (e.target.closest("button.ack")) onAck(li.dataset.id);
      else if (e.target.closest("button.silence")) onSilence(li.dataset.id);
      else onSelect(li.dataset.id);
    });
  }

  // canWrite: the page has an API token (the Silence… button is enabled).
  render(alerts, operator, canWrite = true) {
    for (const [id, item] of this.items) {
      if (!alerts.has(id)) {
        item.li.remove();
        this.items.delete(id);
      }
    }
    const all = [...alerts.values()];
    const shown = all.filter((f) => matchesFilter(f.properties, this.filter)).sort(alertOrder(this.filter.sort));
    const kept = new Set(shown);
    const ordered = shown.concat(all.filter((f) => !kept.has(f))); // the filtered-out ones last, hidden
    ordered.forEach((feature, index) => {
      const p = feature.properties;
      let item = this.items.get(p.identifier);
      if (!item) {
        item = this.makeItem(p.identifier);
        this.items.set(p.identifier, item);
      }
      const key = [p.message_id, p.level, p.certainty, p.acknowledged_by.join(","), p.units_on_scene.join(","),
        operator, canWrite, p.headline, p.headline_zh].join("|");
      if (item.key !== key) {
        item.key = key;
        this.fill(item, p, operator, canWrite);
      }
      const liveKey = JSON.stringify([p.value, p.trend_arrow, p.trend, p.peak, p.peak_at, p.history, p.suppressed]);
      if (item.liveKey !== liveKey) {
        item.liveKey = liveKey;
        fillLive(item, p);
      }
      const hidden = !kept.has(feature);
      if (item.li.hidden !== hidden) item.li.hidden = hidden;
      if (this.list.children[index] !== item.li) this.list.insertBefore(item.li, this.list.children[index] || null);
    });
    this.count.textContent = String(alerts.size);
    this.empty.hidden = alerts.size > 0;
    const filtered = shown.length < alerts.size;
    const line = filtered
      ? (shown.length ? `Showing ${shown.length} of ${alerts.size} · 显示 ${shown.length}/${alerts.size}`
        : `None of ${alerts.size} match the filter · 无匹配预警`) : "";
    if (this.filterLine.textContent !== line) { // touched only when it changes: this runs on every alert event
      this.filterLine.hidden = !filtered;
      this.filterLine.textContent = line;
    }
  }

  // A new filter or order (app.js redraws the list after it).
  setFilter(filter) {
    this.filter = { ...this.filter, ...filter };
  }

  makeItem(id) {
    const li = el("li", "alert");
    li.dataset.id = id;
    li.tabIndex = 0;
    const f = {
      level: el("div", "lvl"),
      hazard: el("b", "hazard"),
      event: el("span", "event"),
      tag: el("span", "tag-forecast", FORECAST_TAG),
      expected: el("div", "expected"),
      headline: el("div", "headline"),
      headlineZh: el("div", "headline-zh"),
      badge: el("span", "badge-suppressed"),
      value: el("span", "value"),
      arrow: el("span", "trend-arrow"),
      peak: el("span", "peak"),
      spark: sparklineElement(),
      area: el("div", "area"),
      raised: el("span", "raised"),
      age: el("span", "age"),
      size: el("span", "size"),
      ackBy: el("span", "ack-by"),
      onScene: el("span", "on-scene"),
      button: el("button", "ack", "Acknowledge"),
      silence: el("button", "silence", "Silence…"),
    };
    f.badge.hidden = true;
    const body = el("div", "body");
    const title = el("div", "title");
    title.append(f.tag, f.badge, f.hazard, " ", f.event);
    const reading = el("div", "reading");
    const figures = el("div", "figures");
    const now = el("div", "now");
    now.append(f.value, f.arrow);
    figures.append(now, f.peak);
    reading.append(figures, f.spark);
    const meta = el("div", "meta");
    meta.append("raised ", f.raised, " · ", f.age, " ago · ", f.size);
    const acks = el("div", "acks");
    acks.append(el("span", "k", "ack by"), f.ackBy);
    const scene = el("div", "scene");
    scene.append(el("span", "k", "on scene"), f.onScene);
    body.append(title, f.headline, f.headlineZh, f.expected, reading, f.area, meta, acks, scene);
    const actions = el("div", "actions");
    actions.append(f.button, f.silence);
    li.append(f.level, body, actions);
    return { li, f, key: null, liveKey: null, raisedAt: null };
  }

  fill(item, p, operator, canWrite) {
    const f = item.f;
    item.raisedAt = p.raised_at;
    const forecast = isForecast(p);
    const stale = [...item.li.classList].filter((c) => c.startsWith("level-") || c.startsWith("hz-"));
    item.li.classList.remove(...stale, "acked", "unacked");
    item.li.classList.add("alert", `level-${p.level}`, `hz-${p.hazard}`, p.acknowledged_by.length ? "acked" : "unacked");
    item.li.classList.toggle("forecast", forecast);
    item.li.classList.toggle("selected", p.identifier === this.selected);
    item.li.classList.toggle("has-headline", Boolean(p.headline));
    f.headline.textContent = p.headline || "";
    f.headline.hidden = !p.headline;
    f.headlineZh.textContent = p.headline_zh || "";
    f.headlineZh.hidden = !p.headline_zh;
    f.headlineZh.lang = "zh-CN";
    f.silence.disabled = !canWrite;
    f.silence.classList.toggle("readonly", !canWrite);
    f.silence.title = canWrite ? "Stop delivering matching alerts to field units for a while (they stay on this list)"
      : READ_ONLY;
    f.tag.hidden = !forecast;
    f.tag.title = forecast ? `CAP certainty ${p.certainty}, urgency ${p.urgency || "–"}` : "";
    f.expected.textContent = forecast ? expectedText(p) : "";
    f.expected.hidden = !forecast || !f.expected.textContent;
    f.level.textContent = "";
    f.level.append(el("span", "lvl-name", p.level_name.toUpperCase()), el("span", "lvl-letter", HAZARD_LETTER[p.hazard] || "!"));
    f.hazard.textContent = p.event || HAZARD_NAME[p.hazard] || p.hazard;
    f.event.textContent = p.status === "Exercise" ? "exercise" : "";
    f.area.textContent = p.area_desc || "(no area description)";
    f.area.title = p.area_desc || "";
    f.raised.textContent = clockTime(p.raised_at);
    f.size.textContent = p.area_m2 >= 1e4 ? `${(p.area_m2 / 1e4).toFixed(1)} ha` : `${Math.round(p.area_m2)} m²`;
    const ackers = operatorsFirst(p);
    f.ackBy.textContent = listed(ackers, 3) || "not yet";
    f.ackBy.title = ackers.join(", ");
    f.onScene.textContent = listed(p.units_on_scene, 3) || "none";
    f.onScene.title = p.units_on_scene.join(", ");
    const mine = operator && p.acknowledged_by.includes(operator);
    f.button.disabled = Boolean(mine) || !canWrite;
    f.button.classList.toggle("readonly", !canWrite);
    f.button.textContent = mine ? "Acknowledged ✓" : "Acknowledge";
    f.button.title = !canWrite ? READ_ONLY : mine ? "acknowledged by you · 已确认" : "I have seen it and act on it · 确认";
  }

  // "… ago" of every item, from the twin's clock (called on every tick).
  renderAges(now) {
    for (const item of this.items.values()) {
      item.f.age.textContent = now == null || item.raisedAt == null ? "–" : duration(now - item.raisedAt);
    }
  }

  select(id) {
    this.selected = id;
    for (const [aid, item] of this.items) item.li.classList.toggle("selected", aid === id);
    const item = this.items.get(id);
    if (item) item.li.scrollIntoView({ block: "nearest" });
  }
}

// ------------------------------------------------------------------ silences
// "hazard = flood · place = flood:point:water-03" of a silence's matchers.
export function matchersText(matchers) {
  return (matchers || []).map((m) => `${m.label ?? m.name} ${m.op || "="} ${m.value}`).join(" · ") || "(everything)";
}

// The active silences (GET /api/silences?state=active) under the alert list, each with an Expire button.
export class SilenceList {
  constructor(root, onExpire) {
    this.root = root;
    this.list = root.querySelector("#silence-list");
    this.count = root.querySelector("#silence-count");
    this.list.addEventListener("click", (e) => {
      const button = e.target.closest("button.expire");
      if (button && !button.disabled) onExpire(button.closest("[data-id]").dataset.id);
    });
  }

  render(silences, canWrite) {
    this.root.hidden = false;
    this.root.dataset.available = "true";
    this.count.textContent = String(silences.length);
    this.list.replaceChildren(...silences.map((s) => {
      const row = el("li", "silence");
      row.dataset.id = s.id;
      const text = el("div", "body");
      text.append(el("div", "matchers", matchersText(s.matchers)));
      const until = s.ends_at != null ? `until ${clockTime(s.ends_at)}` : "";
      text.append(el("div", "meta", [until, s.created_by && `by ${s.created_by}`].filter(Boolean).join(" · ")));
      if (s.comment) text.append(el("div", "why", s.comment));
      const expire = el("button", "expire", "Expire");
      expire.disabled = !canWrite;
      expire.title = canWrite ? "End this silence now" : READ_ONLY;
      row.append(text, expire);
      return row;
    }));
  }

  // The twin has no silences route (an older twin): no section at all.
  hide() {
    this.root.hidden = true;
    this.root.dataset.available = "false";
  }
}

// ------------------------------------------------------------------ status: top bar and system panel
// The twin time and the link state stay in the top bar; the engineering figures (messages/s, rejected, lag,
// outbox, units located, alerts) are in the collapsible System · 系统 panel. `root` holds both.
// messages/s is measured here, from the "received" counter over the last few seconds of wall time.
const RATE_WINDOW_MS = 5000;

export class StatusStrip {
  constructor(root) {
    this.root = root;
    this.samples = []; // [wall ms, received]
  }

  setValue(id, text, state) {
    const li = this.root.querySelector("#" + id);
    li.querySelector(".v").textContent = text;
    if (state !== undefined) li.dataset.state = state;
  }

  render(status) {
    const now = performance.now();
    this.samples.push([now, status.received]);
    while (this.samples.length > 2 && now - this.samples[0][0] > RATE_WINDOW_MS) this.samples.shift();
    const [t0, n0] = this.samples[0];
    const rate = now > t0 ? ((status.received - n0) * 1000) / (now - t0) : null;
    const rejected = Object.values(status.rejected || {}).reduce((a, b) => a + b, 0);
    const share = status.received ? (100 * rejected) / status.received : 0;
    this.setValue("st-clock", twinDateTime(status.t));
    this.setValue("st-rate", rate == null || this.samples.length < 2 ? "–" : rate.toFixed(rate < 10 ? 1 : 0));
    this.setValue("st-rejected", `${rejected.toLocaleString("en")} (${share.toFixed(1)}%)`, rejected ? "warn" : "ok");
    this.setValue("st-alerts", String(status.alerts_active), status.alerts_active ? "alert" : "ok");
    this.setValue("st-lag", `${Math.round(status.lag_ms)} ms · tick ${Math.round(status.tick_ms)} ms`,
      status.lag_ms > 5000 ? "alert" : status.lag_ms > 1500 ? "warn" : "ok");
    this.setValue("st-units", String(status.units_tracked));
    this.setValue("st-outbox", String(status.outbox ?? 0), status.outbox > 10 ? "warn" : "ok");
  }

  setLink(state, detail) {
    const li = this.root.querySelector("#st-link");
    li.className = `link ${state}`;
    const text = { connecting: "connecting", live: "live", retrying: "reconnecting", stale: "no ticks" }[state];
    li.querySelector(".v").textContent = state === "retrying" ? `${text} in ${Math.ceil(detail / 1000)} s` : text;
    document.body.dataset.ws = state;
  }
}

// ------------------------------------------------------------------ legend
const ALERT_LEVELS = [[1, "blue · 蓝"], [2, "yellow · 黄"], [3, "orange · 橙"], [4, "red · 红"]];
const UNIT_SYMBOLS = [["sym-police", "police · 公安"], ["sym-fire", "fire · 消防"], ["sym-medical", "medical · 医疗"],
  ["sym-scene", "on scene · 到场"], ["sym-vehicle", "vehicle · 车辆"]];
// The base map's colours when the twin does not list them (GET /api/basemap/legend missing).
const BASEMAP_FALLBACK = [["sym-building", "building · 建筑"], ["sym-road", "road · 道路"], ["sym-water", "water · 水体"]];

function legendSection(root, title, items) {
  root.append(el("div", "panel-title", title));
  const row = el("div", "legend-symbols");
  row.append(...items);
  root.append(row);
  return row;
}

function legendItem(symbol, label) {
  const item = el("span", "legend-item");
  item.append(symbol, label);
  return item;
}

// The complete legend: the risk layer's levels (and held cells), the alerts (marker, area, forecast hatch, the
// four levels), units and vehicles, road links by congestion level (when the twin has them), and every colour
// of the base map (extras.basemap: the items of GET /api/basemap/legend).
export function renderLegend(root, layerLegend, extras = {}) {
  root.replaceChildren();
  if (layerLegend) {
    root.append(el("div", "panel-title", layerLegend.long_name || layerLegend.name));
    const row = el("div", "legend-levels");
    for (const entry of layerLegend.entries || []) {
      if (entry.value < 1) continue; // none and no data are transparent
      const swatch = el("span", "swatch");
      swatch.style.background = entry.colour;
      row.append(legendItem(swatch, entry.label));
    }
    if (layerLegend.mode === "levels" && HELD_LAYERS.has(layerLegend.name)) {
      const item = legendItem(el("span", "swatch sym-held"), HELD_LABEL);
      item.classList.add("held");
      row.append(item);
    }
    root.append(row);
  }
  const alerts = ALERT_LEVELS.map(([level, label]) => legendItem(el("span", `sym sym-badge level-${level}`), label));
  legendSection(root, "Alerts · 预警", [
    ...alerts, legendItem(el("span", "sym sym-area"), "alert area · 预警范围"),
    legendItem(el("span", "sym sym-forecast"), "forecast · 预测"),
    legendItem(el("span", "sym sym-badge sym-letter"), "marker: C crowd · F flood · T traffic · R rain"),
  ]);
  legendSection(root, "Units · 力量", UNIT_SYMBOLS.map(([cls, label]) => legendItem(el("span", `sym ${cls}`), label)));
  if (extras.links) {
    legendSection(root, "Road links · 路段", Object.entries(LEVEL_LABELS).sort((a, b) => a[0] - b[0])
      .map(([level, label]) => legendItem(el("span", `sym sym-link road-link-swatch lvl-${level}`), label)));
  }
  const items = extras.basemap || [];
  // the buildings' height classes (keys building_h0, building_h1, …) as one row of swatches, lightest = tallest
  const classes = items.filter((item) => /^building_h\d+$/.test(item.key));
  const base = items.filter((item) => !classes.includes(item)).map((item) => {
    const swatch = el("span", `sym ${item.shape === "line" ? "sym-line" : "sym-fill"}`);
    swatch.style.background = item.colour;
    const entry = legendItem(swatch, [item.name_en, item.name].filter(Boolean).join(" · "));
    entry.dataset.key = item.key;
    return entry;
  });
  if (classes.length) {
    const ramp = el("span", "legend-ramp");
    for (const item of classes) {
      const swatch = el("span", "sym sym-fill");
      swatch.style.background = item.colour;
      swatch.title = [item.name_en, item.name].filter(Boolean).join(" · ");
      swatch.dataset.key = item.key;
      ramp.append(swatch);
    }
    const heights = classes.map((item) => (/(\d+)/.exec(item.name_en || "") || [, ""])[1]).filter(Boolean);
    const span = heights.length > 1 ? ` ${heights[0]}–${heights[heights.length - 1]}+ m` : "";
    base.push(legendItem(ramp, `buildings${span} · 建筑高度`));
  }
  legendSection(root, "Base map · 底图",
    items.length ? base : BASEMAP_FALLBACK.map(([cls, label]) => legendItem(el("span", `sym ${cls}`), label)));
}

// ------------------------------------------------------------------ point read-out
const POINT_LAYERS = [
  ["crowd_density", "crowd", 2], ["water_depth", "water depth", 2], ["rain_rate", "rain", 1],
  ["traffic_speed", "traffic speed", 0], ["risk_crowd", "crowd risk", 2], ["risk_flood", "flood risk", 2],
  ["risk_traffic", "traffic risk", 2], ["building_height", "building height", 0], ["elevation", "elevation", 1],
];

// The level a layer shows at a point is held (its hazard has no fresh data; held.js).
function heldAt(point, name) {
  const levels = Object.fromEntries(Object.entries(point.levels).map(([layer, lv]) => [layer, [lv.value]]));
  return isHeld(name, point.layers.level_nodata?.value, levels);
}

// Empty the panel and give it its title and a close button.
function panelHead(root, title, onClose) {
  root.replaceChildren();
  const head = el("div", "panel-title", title);
  const close = el("button", "close", "×");
  close.title = "close";
  close.addEventListener("click", onClose);
  head.append(close);
  root.append(head);
}

// The values at a point; with `building` (a function drawing into a <div>), the building clicked above them.
export function renderPoint(root, point, onClose, building = null) {
  panelHead(root, building ? "Building · 建筑" : "Point", onClose);
  if (building) {
    const box = el("div", "building-record");
    building(box);
    root.append(box);
    if (point) root.append(el("div", "panel-title point-sub", "Point · 位置"));
  }
  if (!point) {
    root.hidden = false;
    return;
  }
  if (point.error) {
    root.append(el("div", "muted", point.error));
    root.hidden = false;
    return;
  }
  root.append(el("div", "mono", `${point.lat.toFixed(5)}° N ${point.lon.toFixed(5)}° E`));
  root.append(el("div", "mono muted", `Beidou ${point.cell.beidou} · cell ${point.row},${point.col}`));
  const levels = el("div", "point-levels");
  for (const name of ["level", "level_crowd", "level_flood", "level_traffic"]) {
    const lv = point.levels[name];
    if (!lv) continue;
    const held = heldAt(point, name);
    const chip = el("span", `chip level-${lv.value}` + (held ? " held" : ""),
      `${name === "level" ? "overall" : name.slice(6)}: ${lv.name}` + (held ? " (held, no data)" : ""));
    if (held) chip.title = HELD_LABEL;
    levels.append(chip);
  }
  root.append(levels);
  const table = el("table", "point-values");
  for (const [name, label, digits] of POINT_LAYERS) {
    const layer = point.layers[name];
    if (!layer) continue;
    const tr = el("tr");
    const value = layer.value == null ? "no data" : `${layer.value.toFixed(digits)} ${layer.units === "1" ? "" : layer.units}`;
    tr.append(el("th", null, label), el("td", null, value));
    table.append(tr);
  }
  root.append(table);
  root.hidden = false;
}

const WARNING_LABELS = { 1: "blue · 蓝色", 2: "yellow · 黄色", 3: "orange · 橙色", 4: "red · 红色" };

// A road link (a /api/links feature's properties) in the point panel: name, speeds, samples, confidence.
export function renderLink(root, link, onClose) {
  panelHead(root, "Road link · 路段", onClose);
  if (!link) {
    root.append(el("div", "muted", "This link is no longer in the twin."));
    root.hidden = false;
    return;
  }
  const names = [link.name, link.name_en].filter(Boolean).join(" · ") || "unnamed road";
  root.append(el("div", "link-name", names));
  const flags = ["tunnel", "bridge", "elevated"].filter((f) => link[f]);
  root.append(el("div", "mono muted", `link ${link.link_id} · ${link.road_class}` +
    `${flags.length ? " · " + flags.join(", ") : ""} · ${link.lanes} lane${link.lanes === 1 ? "" : "s"} · ` +
    `${link.length_m.toFixed(0)} m`));
  const chip = el("span", `chip congestion lvl-${link.level}`, LEVEL_LABELS[link.level] ?? String(link.level));
  const levels = el("div", "point-levels");
  levels.append(chip);
  root.append(levels);
  const num = (v, digits, unit) => (v == null ? "no data" : `${v.toFixed(digits)} ${unit}`.trim());
  if (link.warning > 0) {
    levels.append(el("span", `chip level-${link.warning}`, WARNING_LABELS[link.warning] ?? String(link.warning)));
  }
  if (link.incident === 1) levels.append(el("span", "chip incident", "incident · 事件"));
  const rows = [
    ["speed", num(link.speed_kmh, 1, "km/h")],
    ["congestion speed", num(link.congestion_kmh, 1, "km/h")],
    ["free-flow speed", num(link.free_flow_kmh, 0, "km/h")],
    ["TPI-like index", num(link.tpi, 1, "")],
    ["last window", num(link.speed_window_kmh, 1, "km/h")],
    ["travel time", num(link.travel_time_s, 0, "s")],
    ["samples", String(link.samples ?? 0)],
    ["vehicles", String(link.vehicles ?? 0)],
    ["confidence", num(link.confidence, 2, "")],
    ["loop detectors", String(link.loops ?? 0)],
  ];
  const table = el("table", "point-values link-values");
  for (const [label, value] of rows) {
    const tr = el("tr");
    tr.dataset.k = label;
    tr.append(el("th", null, label), el("td", null, value));
    table.append(tr);
  }
  root.append(table);
  root.hidden = false;
}

// ------------------------------------------------------------------ notices
export function showNotice(root, text, kind = "error") {
  const notice = root.querySelector("#notice");
  notice.textContent = text;
  notice.className = kind;
  notice.hidden = !text;
}
