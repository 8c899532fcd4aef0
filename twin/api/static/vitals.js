// The city's vital signs (城市运行体征): seven indicators of one node of the management tree (city → district →
// street → grid unit), each a tile with its level's colour, value and unit, one-hour trend arrow and a bilingual
// label; a drill-down selector chooses the node (GET /api/admin-units), and app.js outlines its polygon.
//
// app.js reads GET /api/indicators?level=…&parent=… after each tick (at most once a second, VITALS_EVERY_MS) and
// calls render(); a click on a tile calls onFilter(name) (people, water, traffic filter the map's risk layer and
// the alert list by hazard; a second click clears the filter).

import { el } from "./dom.js";

// [name, Chinese, English] in the order of the page (the shared brief of issue 18).
export const INDICATORS = [
  ["people", "人流", "People"], ["water", "积水", "Water"], ["traffic", "交通", "Traffic"], ["alerts", "告警", "Alerts"],
  ["cases", "案件", "Cases"], ["sensors", "感知设备", "Sensors"], ["units", "力量", "Units"],
];
// What a tile filters: the risk layer it shows and the alerts' hazard it keeps [design].
export const TILE_FILTER = {
  people: { layer: "level_crowd", hazard: "crowd" },
  water: { layer: "level_flood", hazard: "flood" },
  traffic: { layer: "level_traffic", hazard: "traffic" },
};
export const VITALS_EVERY_MS = 1000; // the tiles are read again at most once a second [design]
export const LEVELS = ["city", "district", "street", "unit"];
const LEVEL_WORD = { city: "City · 市", district: "District · 区", street: "Street · 街道", unit: "Unit · 网格" };
const LEVEL_TITLE = {
  "-1": "no data · 无数据", 0: "normal · 正常", 1: "blue · 蓝色", 2: "yellow · 黄色", 3: "orange · 橙色", 4: "red · 红色",
};
const NO_DATA = "no data · 无数据"; // a tile's detail line when its indicator has no value
// Digits of each indicator's value on its tile: people counted whole, water depth to the centimetre, the TPI-like
// index to a tenth, a share of devices in whole percent, counts whole [design].
const DIGITS = { people: 0, water: 2, traffic: 1, alerts: 0, cases: 0, sensors: 0, units: 0 };
// The unit as a tile shows it: "person" as 人, the dimensionless "1" as nothing (counts; the traffic index).
const UNIT_TEXT = { person: "人", m: "m", "%": "%", 1: "" };
// Whether a rising value is bad (red arrow), good (green) or neither.
const RISING = { people: "bad", water: "bad", traffic: "bad", alerts: "bad", cases: "bad", sensors: "good", units: "" };

// "12,345" of a value with the indicator's digits ("–" without one).
export function vitalValue(name, value) {
  if (value == null || !Number.isFinite(value)) return "–";
  const digits = DIGITS[name] ?? 1;
  return value.toLocaleString("en", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export const vitalUnit = (unit) => (unit in UNIT_TEXT ? UNIT_TEXT[unit] : unit || "");

// The small line under a tile's value, from the indicator's detail.
export function vitalDetail(name, ind) {
  const d = ind.detail || {};
  switch (name) {
    case "people": return d.cells_with_data != null ? `${d.cells_with_data} cells · 格` : "";
    case "water": {
      const n = d.waterlogged_points;
      return n != null ? `${n} point${n === 1 ? "" : "s"} · 积水点` : "";
    }
    case "traffic": return d.slow_roads != null ? `${d.slow_roads} slow · 拥堵路段` : "";
    case "alerts": { // "red 2 · orange 1": the tile draws them as coloured counts (alertCounts)
      const by = d.by_level || {};
      return [["4", "red"], ["3", "orange"], ["2", "yellow"], ["1", "blue"]].filter(([k]) => by[k])
        .map(([k, word]) => `${word} ${by[k]}`).join(" · ");
    }
    case "cases": return d.overdue ? `${d.overdue} overdue · 超时` : "";
    case "sensors": return d.expected != null ? `${d.reporting ?? 0}/${d.expected} reporting · 在线` : "";
    case "units": return d.busy != null ? `${d.busy} busy · ${d.free ?? 0} free · 忙/闲` : "";
    default: return "";
  }
}

// "+123 in 1 h" of a trend (the value now minus ≈1 h ago).
function trendTitle(name, ind) {
  if (typeof ind.trend !== "number") return "no trend yet · 暂无趋势";
  const sign = ind.trend > 0 ? "+" : "";
  return `${sign}${vitalValue(name, ind.trend)} ${vitalUnit(ind.unit)} in 1 h · 近1小时`.replace(/ {2}/g, " ");
}

export class VitalsPanel {
  // root: #vitals; onFilter(name | null) on a click on a tile that filters (a second click: null), onTile(name) on
  // a click on another tile; onNode(id, feature | null) when the node changes.
  constructor(root, { onFilter, onTile, onNode }) {
    this.root = root;
    this.tiles = root.querySelector("#vital-tiles");
    this.selects = { district: root.querySelector("#drill-district"), street: root.querySelector("#drill-street"),
      unit: root.querySelector("#drill-unit") };
    this.cityButton = root.querySelector("#drill-city");
    this.onFilter = onFilter;
    this.onTile = onTile || (() => {});
    this.onNode = onNode;
    this.nodes = new Map(); // id -> GeoJSON feature of /api/admin-units
    this.children = new Map(); // parent id -> [feature, ...]
    this.node = "city";
    this.filter = null;
    this.items = new Map(); // indicator -> {li, f}
    for (const [name, zh, en] of INDICATORS) this.items.set(name, this.makeTile(name, zh, en));
    this.tiles.append(...[...this.items.values()].map((i) => i.li));
    this.tiles.addEventListener("click", (e) => {
      const li = e.target.closest("li[data-name]");
      if (!li) return;
      const name = li.dataset.name;
      if (name in TILE_FILTER) this.onFilter(this.filter !== name ? name : null);
      else this.onTile(name);
    });
    this.cityButton.addEventListener("click", () => this.choose("city"));
    for (const level of ["district", "street", "unit"]) {
      this.selects[level].addEventListener("change", (e) => {
        const parentLevel = LEVELS[LEVELS.indexOf(level) - 1];
        const parent = parentLevel === "city" ? "city" : this.selects[parentLevel].value;
        this.choose(e.target.value || parent);
      });
    }
  }

  makeTile(name, zh, en) {
    const li = el("li", "vital lv-none");
    li.dataset.name = name;
    li.tabIndex = 0;
    const f = {
      label: el("div", "vital-label"), value: el("span", "vital-value", "–"), unit: el("span", "vital-unit"),
      arrow: el("span", "vital-trend"), detail: el("div", "vital-detail"),
    };
    f.label.append(el("b", "zh", zh), " ", el("span", "en", en));
    f.label.lang = "zh-CN";
    const reading = el("div", "vital-reading");
    reading.append(f.value, f.unit, f.arrow);
    li.append(f.label, reading, f.detail);
    if (name in TILE_FILTER) li.classList.add("filters");
    li.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        li.click();
      }
    });
    return { li, f };
  }

  // The management tree (GET /api/admin-units without a level: every node); false when the twin has none.
  setTree(collection) {
    this.nodes = new Map();
    this.children = new Map();
    for (const f of collection?.features || []) {
      const p = f.properties;
      this.nodes.set(p.id, f);
      if (p.parent) {
        if (!this.children.has(p.parent)) this.children.set(p.parent, []);
        this.children.get(p.parent).push(f);
      }
    }
    for (const list of this.children.values()) {
      list.sort((a, b) => (a.properties.name_en || a.properties.name || "").localeCompare(b.properties.name_en || ""));
    }
    this.fillSelect("district", "city");
    this.root.dataset.tree = String(this.nodes.size);
    return this.nodes.size > 0;
  }

  fillSelect(level, parent) {
    const select = this.selects[level];
    const kids = parent ? this.children.get(parent) || [] : [];
    const first = el("option", null, LEVEL_WORD[level]);
    first.value = "";
    select.replaceChildren(first, ...kids.map((f) => {
      const o = el("option", null, nodeName(f.properties));
      o.value = f.properties.id;
      return o;
    }));
    select.disabled = kids.length === 0;
  }

  // Choose a node by id ("city", "district:310101", …): the selectors follow, onNode is told.
  choose(id) {
    const chain = [];
    for (let at = this.nodes.get(id); at; at = this.nodes.get(at.properties.parent)) chain.unshift(at.properties);
    const byLevel = Object.fromEntries(chain.map((p) => [p.level, p.id]));
    this.fillSelect("district", "city");
    this.selects.district.value = byLevel.district || "";
    this.fillSelect("street", byLevel.district || null);
    this.selects.street.value = byLevel.street || "";
    this.fillSelect("unit", byLevel.street || null);
    this.selects.unit.value = byLevel.unit || "";
    this.node = this.nodes.has(id) || id === "city" ? id : "city";
    this.tiles.dataset.node = this.node;
    this.cityButton.classList.toggle("current", this.node === "city");
    this.onNode(this.node, this.nodes.get(this.node) || null);
  }

  // The level and parent to ask GET /api/indicators for the chosen node.
  query() {
    const f = this.nodes.get(this.node);
    if (!f || this.node === "city") return { level: "city", parent: null };
    return { level: f.properties.level, parent: f.properties.parent };
  }

  // body: GET /api/indicators; shows the chosen node's tiles (no data when it is not in the body).
  render(body) {
    const node = (body?.nodes || []).find((n) => n.id === this.node) || null;
    this.tiles.dataset.t = body?.t != null ? String(body.t) : "";
    this.tiles.dataset.shown = node ? node.id : "";
    const title = node ? nodeName(node) : "no data · 无数据";
    this.tiles.title = title;
    for (const [name, item] of this.items) this.fillTile(name, item, node?.indicators?.[name] || null);
  }

  fillTile(name, item, ind) {
    const { li, f } = item;
    const level = ind && Number.isInteger(ind.level) && ind.level >= 0 ? ind.level : -1;
    li.className = `vital lv-${level < 0 ? "none" : level}` + (name in TILE_FILTER ? " filters" : "") +
      (this.filter === name ? " active" : "");
    li.dataset.level = String(level);
    li.dataset.value = ind && ind.value != null ? String(ind.value) : "";
    f.value.textContent = vitalValue(name, ind?.value);
    f.unit.textContent = ind && ind.value != null ? vitalUnit(ind.unit) : "";
    const arrow = ind && ind.value != null ? ind.trend_arrow || "" : "";
    f.arrow.textContent = arrow;
    const rising = RISING[name];
    f.arrow.className = "vital-trend" + (arrow === "↑" && rising ? ` ${rising}` : "") +
      (arrow === "↓" && rising ? ` ${rising === "bad" ? "good" : "bad"}` : "");
    f.arrow.title = ind ? trendTitle(name, ind) : "";
    // no value (no sensor data for it: e.g. water with no gauge reporting): "–" and "no data", not a detail that
    // reads like a measurement ("0 points")
    const known = ind && ind.value != null && Number.isFinite(ind.value);
    f.detail.textContent = known ? vitalDetail(name, ind) : NO_DATA;
    f.detail.classList.toggle("no-data", !known);
    f.detail.title = "";
    if (name === "alerts" && known) alertCounts(f.detail, ind.detail?.by_level || {});
    const [, zh, en] = INDICATORS.find((i) => i[0] === name);
    const filterHint = name in TILE_FILTER ? " · click to filter the map and the list · 点击筛选" : "";
    const clickHint = name === "alerts" ? " · click for the list · 点击查看列表"
      : name === "cases" ? " · click for the cases · 点击查看案件" : "";
    li.title = `${zh} ${en}: ${LEVEL_TITLE[level]}${filterHint}${clickHint}`;
    li.setAttribute("aria-pressed", String(this.filter === name));
  }

  setFilter(name) {
    this.filter = name;
    for (const [n, item] of this.items) {
      item.li.classList.toggle("active", n === name);
      item.li.setAttribute("aria-pressed", String(n === name));
    }
  }
}

// The open alerts by level as counts in their level's colour, most severe first; the words stay in the title.
function alertCounts(box, byLevel) {
  const words = box.textContent;
  box.replaceChildren(...["4", "3", "2", "1"].filter((k) => byLevel[k]).map((k) => {
    const chip = el("span", `lvl-count level-${k}`, String(byLevel[k]));
    chip.dataset.level = k;
    return chip;
  }));
  box.title = words;
}

// "黄浦区 Huangpu" of a node's names.
export function nodeName(p) {
  return [p.name, p.name_en].filter(Boolean).join(" · ") || p.id;
}
