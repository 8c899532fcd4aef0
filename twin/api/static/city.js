// The city page: the districts on a map coloured by their twin's status, with their active alerts and key vital
// signs, the merged city alerts on the map and in a list, and a drill-down link per district to its twin's own
// page and API. Everything comes from the city tier's API on this server (GET /api/city/map once; districts,
// indicators and alerts every POLL_MS); nothing is loaded from other sites.
//
// The map is an SVG in screen pixels: lon/lat are projected equirectangularly about the districts' centre
// (x scaled by cos(latitude), about 0.3 % off at Shanghai's extent), fitted to the pane and drawn again when the
// pane's size changes.

import { levelColourVar, levelLabel, shanghaiTime } from "./levels.js";

const POLL_MS = 5000;
const LANG_KEY = "citytwin.lang"; // the same key as the dashboard's
const SVG_NS = "http://www.w3.org/2000/svg";
const MARGIN_PX = 24;
const STATUS_ORDER = ["unavailable", "stale", "starting", "unknown", "ok"]; // worst first (a district's tiles)
const STATUS_NAMES = {
  ok: ["ok", "正常"], starting: ["starting", "启动中"], stale: ["stale", "滞后"],
  unavailable: ["unavailable", "不可达"], unknown: ["unknown", "未知"],
};
// The key vital signs of a district card: [name, English, Chinese]
const KEY_INDICATORS = [
  ["people", "people", "人数"], ["water", "water", "积水"], ["traffic", "traffic", "交通"],
  ["sensors", "sensors", "在线率"],
];
const UNIT_TEXT = { person: ["", "人"], m: ["m", "米"], "%": ["%", "%"], 1: ["", ""] };
const LEVEL_OF_COLOUR = { blue: 1, yellow: 2, orange: 3, red: 4 }; // CAP warningLevel -> level
const STATUS_COLOUR = { ok: "--ok", starting: "--starting", stale: "--warn", unavailable: "--bad", unknown: "--unknown" };

const state = {
  lang: readLang(), map: null, districts: [], indicators: new Map(), alerts: [], city: null,
  selected: null, selectedAlert: null, renders: 0,
};

function readLang() {
  try {
    return localStorage.getItem(LANG_KEY) === "en" ? "en" : "zh";
  } catch {
    return "zh";
  }
}

const text = (en, zh) => (state.lang === "en" ? en : zh);
const nameOf = (d) => (state.lang === "en" ? d.name_en || d.name : d.name || d.name_en);

// Attributes are set as attributes, except "style": an object of CSS properties set through the CSSOM (the page's
// Content-Security-Policy refuses style attributes).
function setAll(node, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "style") for (const [prop, value] of Object.entries(v)) node.style.setProperty(prop, value);
    else node.setAttribute(k, v);
  }
  return node;
}

function el(tag, attrs = {}, parent = null, content = null) {
  const node = setAll(document.createElement(tag), attrs);
  if (content != null) node.textContent = content;
  if (parent) parent.appendChild(node);
  return node;
}

function svg(tag, attrs = {}, parent = null) {
  const node = setAll(document.createElementNS(SVG_NS, tag), attrs);
  if (parent) parent.appendChild(node);
  return node;
}

// A city alert's level (1 blue ... 4 red) from its CAP warningLevel ("red", or a number); -1 unknown.
function alertLevel(p) {
  const v = p.level;
  if (typeof v === "string" && v in LEVEL_OF_COLOUR) return LEVEL_OF_COLOUR[v];
  const n = Number(v);
  return Number.isInteger(n) && n >= 1 && n <= 4 ? n : -1;
}

// A link's address only when it is an http(s) URL (a district's API comes from the command line; never a
// javascript: or data: link).
function safeUrl(url) {
  return typeof url === "string" && /^https?:\/\/[^\s"'<>]+$/.test(url) ? url : null;
}

// ---------------------------------------------------------------- reading the API
async function getJson(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

async function poll() {
  try {
    if (!state.map) state.map = await getJson("/api/city/map");
    const [districts, indicators, alerts] = await Promise.all([
      getJson("/api/city/districts"), getJson("/api/city/indicators"), getJson("/api/city/alerts")]);
    state.city = districts.city;
    state.districts = districts.districts || [];
    state.indicators = new Map((indicators.districts || []).map((d) => [d.partition, d]));
    state.alerts = alerts.features || [];
    state.updated = Date.now() / 1000;
    document.body.dataset.link = "live";
  } catch (err) {
    document.body.dataset.link = "offline";
    console.warn("city page: the city API did not answer", err);
  }
  render();
}

// ---------------------------------------------------------------- district figures
// The node of a district's answer that is the district itself (id district:<adcode>), else its first node.
function districtNode(partition, code) {
  const answer = state.indicators.get(partition);
  const nodes = (answer && answer.status === "ok" && answer.nodes) || [];
  return nodes.find((n) => n.id === `district:${code}`) || nodes[0] || null;
}

function valueText(ind) {
  if (!ind || ind.value == null) return "–";
  const v = ind.value;
  const number = Math.abs(v) >= 100 ? Math.round(v).toLocaleString("en-US") : String(Math.round(v * 100) / 100);
  const [en, zh] = UNIT_TEXT[ind.unit] || [ind.unit || "", ind.unit || ""];
  const unit = text(en, zh);
  return unit ? `${number} ${unit}` : number;
}

// The worst status of a district's twins (its tiles), "unknown" without any.
function worstStatus(statuses) {
  for (const s of STATUS_ORDER) if (statuses.includes(s)) return s;
  return "unknown";
}

function statusName(s) {
  const [en, zh] = STATUS_NAMES[s] || [s, s];
  return text(en, zh);
}

// ---------------------------------------------------------------- the map
function projectionOf(features, width, height) {
  let [w, s, e, n] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const f of features) {
    for (const [lon, lat] of coordinates(f.geometry)) {
      w = Math.min(w, lon); e = Math.max(e, lon); s = Math.min(s, lat); n = Math.max(n, lat);
    }
  }
  if (!Number.isFinite(w)) return null;
  const kx = Math.cos(((s + n) / 2) * Math.PI / 180);
  const spanX = Math.max((e - w) * kx, 1e-9);
  const spanY = Math.max(n - s, 1e-9);
  const scale = Math.min((width - 2 * MARGIN_PX) / spanX, (height - 2 * MARGIN_PX) / spanY);
  const ox = (width - spanX * scale) / 2;
  const oy = (height - spanY * scale) / 2;
  return ([lon, lat]) => [ox + (lon - w) * kx * scale, oy + (n - lat) * scale];
}

function* coordinates(geometry) {
  if (!geometry) return;
  const polygons = geometry.type === "Polygon" ? [geometry.coordinates]
    : geometry.type === "MultiPolygon" ? geometry.coordinates : [];
  for (const polygon of polygons) for (const ring of polygon) yield* ring;
}

function pathOf(geometry, project) {
  if (!geometry) return "";
  const polygons = geometry.type === "Polygon" ? [geometry.coordinates]
    : geometry.type === "MultiPolygon" ? geometry.coordinates : [];
  const parts = [];
  for (const polygon of polygons) {
    for (const ring of polygon) {
      parts.push(ring.map((p, i) => {
        const [x, y] = project(p);
        return `${i ? "L" : "M"}${x.toFixed(1)} ${y.toFixed(1)}`;
      }).join("") + "Z");
    }
  }
  return parts.join("");
}

function centreOf(geometry) {
  let [w, s, e, n] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const [lon, lat] of coordinates(geometry)) {
    w = Math.min(w, lon); e = Math.max(e, lon); s = Math.min(s, lat); n = Math.max(n, lat);
  }
  return Number.isFinite(w) ? [(w + e) / 2, (s + n) / 2] : null;
}

function renderMap(byCode) {
  const root = document.getElementById("city-map");
  root.replaceChildren();
  const features = (state.map && state.map.features) || [];
  const districts = features.filter((f) => f.properties.kind === "district");
  const twinAreas = features.filter((f) => f.properties.kind === "twin");
  const { width, height } = root.getBoundingClientRect();
  // fitted to the ground the twins cover (where the alerts are), else to the whole districts
  const project = projectionOf(twinAreas.some((f) => f.geometry) ? twinAreas : districts, width, height);
  if (!project) return;
  const areas = svg("g", { class: "districts" }, root);
  const twins = svg("g", { class: "twins" }, root);
  const alertLayer = svg("g", { class: "city-alerts" }, root);
  const labels = svg("g", { class: "labels" }, root);
  for (const f of districts) {
    const p = f.properties;
    const info = byCode.get(p.code);
    const status = `status-${info ? info.status : "unknown"}`;
    const path = svg("path", { d: pathOf(f.geometry, project), class: `district ${status}`, "data-code": p.code },
      areas);
    if (state.selected === p.code) path.classList.add("selected");
    const title = svg("title", {}, path);
    title.textContent = `${nameOf(p)} · ${statusName(info ? info.status : "unknown")}`;
    path.addEventListener("click", () => select(p.code));
    const own = twinAreas.find((f) => f.properties.code === p.code && f.properties.label);
    const [x, y] = project(own ? own.properties.label : p.label);
    const label = svg("text", { x: x.toFixed(1), y: y.toFixed(1), class: "label", "data-code": p.code }, labels);
    label.textContent = nameOf(p);
    const alerts = info ? info.alerts : 0;
    const badge = svg("tspan", { x: x.toFixed(1), dy: "1.2em", class: "badge" }, label);
    badge.textContent = `${text("alerts", "预警")} ${alerts}`;
    const node = info ? districtNode(info.twins[0].partition, p.code) : null;
    const people = node && node.indicators ? node.indicators.people : null;
    if (people && people.value != null) {
      svg("tspan", { x: x.toFixed(1), dy: "1.2em", class: "figure" }, label).textContent =
        `${text("people", "人数")} ${valueText(people)}`;
    }
  }
  for (const f of twinAreas) {
    const info = byCode.get(f.properties.code);
    const status = (info && info.byPartition.get(f.properties.partition)) || "unknown";
    svg("path", { d: pathOf(f.geometry, project), class: `twin-area status-${status}`,
      "data-partition": f.properties.partition }, twins);
  }
  for (const a of state.alerts) {
    const colour = levelColourVar(alertLevel(a.properties));
    svg("path", { d: pathOf(a.geometry, project), class: "city-alert", style: { fill: colour } }, alertLayer);
    const centre = centreOf(a.geometry);
    if (!centre) continue;
    const [x, y] = project(centre);
    const marker = svg("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: 7, class: "alert-marker",
      style: { fill: colour }, "data-alert": a.id }, alertLayer);
    if (state.selectedAlert === a.id) marker.classList.add("selected");
    svg("title", {}, marker).textContent = headlineOf(a);
    marker.addEventListener("click", () => selectAlert(a.id));
  }
}

function renderLegend() {
  const legend = document.getElementById("legend");
  legend.replaceChildren();
  for (const s of ["ok", "starting", "stale", "unavailable", "unknown"]) {
    const li = el("li", {}, legend);
    el("span", { class: "swatch", style: { background: `var(${STATUS_COLOUR[s]})` } }, li);
    el("span", {}, li, statusName(s));
  }
  const li = el("li", {}, legend);
  el("span", { class: "swatch", style: { background: "var(--level-4)" } }, li);
  el("span", {}, li, text("city alert (level colour)", "全市预警（按级别着色）"));
}

// ---------------------------------------------------------------- the side panel
function districtsByCode() {
  const out = new Map();
  for (const d of state.districts) {
    const entry = out.get(d.code) || { code: d.code, twins: [], alerts: 0, byPartition: new Map() };
    entry.twins.push(d);
    entry.alerts += d.alerts_active || 0;
    entry.byPartition.set(d.partition, d.status);
    out.set(d.code, entry);
  }
  for (const entry of out.values()) entry.status = worstStatus(entry.twins.map((t) => t.status));
  return out;
}

function renderCards() {
  const list = document.getElementById("district-list");
  list.replaceChildren();
  for (const d of state.districts) {
    const card = el("li", { class: "district-card", "data-partition": d.partition, "data-status": d.status },
      list);
    if (state.selected === d.code) card.classList.add("selected");
    card.addEventListener("click", (ev) => { if (ev.target.tagName !== "A") select(d.code); });
    const head = el("div", { class: "card-head" }, card);
    el("span", { class: "name" }, head, nameOf(d));
    el("span", { class: "muted" }, head, d.partition);
    el("span", { class: "status" }, head, statusName(d.status));
    el("div", { class: "card-alerts" }, card,
      `${text("active alerts", "活动预警")}: ${d.alerts_active || 0}`);
    const node = districtNode(d.partition, d.code);
    const figures = el("ul", { class: "indicators" }, card);
    for (const [key, en, zh] of KEY_INDICATORS) {
      const ind = node && node.indicators ? node.indicators[key] : null;
      const li = el("li", { "data-indicator": key }, figures);
      el("span", { class: "k" }, li, text(en, zh));
      const v = el("span", { class: "v" }, li);
      const dot = el("span", { class: "lvl", style: { background: levelColourVar(ind ? ind.level : -1) } }, v);
      dot.title = levelLabel(ind ? ind.level : -1, state.lang);
      v.appendChild(document.createTextNode(valueText(ind)));
    }
    const links = el("div", { class: "links" }, card);
    const api = safeUrl(d.api);
    if (api) {
      el("a", { class: "drill", href: `${api}/`, target: "_blank", rel: "noopener" }, links,
        text("district twin ↗", "区级孪生 ↗"));
      el("a", { class: "drill-api", href: `${api}/api/indicators?level=district`, target: "_blank", rel: "noopener" },
        links, text("API", "接口"));
    } else {
      el("span", { class: "muted" }, links, text("no API address", "无接口地址"));
    }
    if (d.status !== "ok" && d.detail) el("div", { class: "detail muted" }, card, d.detail);
  }
}

function headlineOf(a) {
  const p = a.properties;
  return (state.lang === "en" ? p.headline || p.headline_zh : p.headline_zh || p.headline) || a.id;
}

function renderAlerts() {
  const list = document.getElementById("alert-list");
  list.replaceChildren();
  document.getElementById("alert-count").textContent = String(state.alerts.length);
  document.getElementById("no-alerts").hidden = state.alerts.length > 0;
  const names = new Map(state.districts.map((d) => [d.partition, nameOf(d)]));
  for (const a of state.alerts) {
    const p = a.properties;
    const level = alertLevel(p);
    const item = el("li", { class: "alert-item", "data-alert": a.id, "data-level": level,
      style: { "border-left-color": levelColourVar(level) } }, list);
    if (state.selectedAlert === a.id) item.classList.add("selected");
    el("div", { class: "headline" }, item, headlineOf(a));
    const where = (p.districts || []).map((c) => names.get(c) || c).join(" · ");
    el("div", {}, item, `${levelLabel(level, state.lang)} · ${where}`);
    el("div", { class: "muted" }, item,
      `${text("district alerts", "区级预警")}: ${(p.members || []).length} · ${text("sent", "发布")} ${p.sent || "–"}`);
    item.addEventListener("click", () => selectAlert(a.id));
  }
}

function renderSummary() {
  const city = state.city;
  if (city) document.getElementById("city-name").textContent = `${text(city.name_en, city.name)} · ${text("city", "全市")}`;
  const up = state.districts.filter((d) => d.status === "ok").length;
  document.querySelector("#sum-districts .v").textContent = `${up} / ${state.districts.length}`;
  document.querySelector("#sum-alerts .v").textContent = String(state.alerts.length);
  document.querySelector("#sum-time .v").textContent = shanghaiTime(state.updated);
  const link = document.body.dataset.link;
  document.querySelector("#sum-link .v").textContent = link === "live" ? text("live", "在线")
    : link === "offline" ? text("offline", "断开") : text("connecting", "连接中");
}

function renderStatic() {
  document.documentElement.lang = state.lang === "en" ? "en" : "zh";
  for (const node of document.querySelectorAll("[data-zh]")) node.textContent = text(node.dataset.en, node.dataset.zh);
  const toggle = document.getElementById("lang-toggle");
  toggle.textContent = state.lang === "zh" ? "中文" : "EN";
  toggle.dataset.lang = state.lang;
}

function render() {
  const byCode = districtsByCode();
  renderStatic();
  renderSummary();
  renderMap(byCode);
  renderLegend();
  renderCards();
  renderAlerts();
  state.renders += 1;
  document.body.dataset.renders = String(state.renders);
}

function select(code) {
  state.selected = state.selected === code ? null : code;
  render();
  const card = document.querySelector(`.district-card.selected`);
  if (card) card.scrollIntoView({ block: "nearest" });
}

function selectAlert(id) {
  state.selectedAlert = state.selectedAlert === id ? null : id;
  render();
}

document.getElementById("lang-toggle").addEventListener("click", () => {
  state.lang = state.lang === "zh" ? "en" : "zh";
  try {
    localStorage.setItem(LANG_KEY, state.lang);
  } catch {
    // storage off: the choice lasts as long as the page
  }
  render();
});
new ResizeObserver(() => renderMap(districtsByCode())).observe(document.getElementById("map-pane"));
poll();
setInterval(poll, POLL_MS);
