// A building's record (GET /api/buildings/{id}) as the operator reads it after clicking a building: name, use,
// floors, height, floor area, the occupancy estimate, its cells, and the warning levels in those cells by
// hazard. Every field may be missing: it then reads "–".

import { levelLabel, shanghaiTime } from "./levels.js";
import { el } from "./dom.js";

const DASH = "–";
const USE_ZH = {
  residential: "住宅", apartments: "住宅", house: "住宅", commercial: "商业", retail: "零售", office: "办公",
  hotel: "酒店", industrial: "工业", warehouse: "仓储", public: "公共", civic: "公共", government: "政府",
  school: "学校", university: "高校", education: "教育", hospital: "医院", religious: "宗教", church: "教堂",
  temple: "寺庙", cultural: "文化", museum: "博物馆", transport: "交通", train_station: "车站", mixed: "混合",
  yes: "建筑", parking: "停车", sports: "体育",
};

const finite = (v) => typeof v === "number" && Number.isFinite(v);
// "12,345" (thousands separators, no decimals)
const whole = (v) => Math.round(v).toLocaleString("en-US");

// "50 m" (whole metres) or "12.5 m".
function metres(v) {
  if (!finite(v)) return DASH;
  return `${Number.isInteger(v) || v >= 100 ? Math.round(v) : v.toFixed(1)} m`;
}

function useText(use) {
  if (!use) return DASH;
  const zh = USE_ZH[String(use).toLowerCase()];
  return zh ? `${use} · ${zh}` : String(use);
}

function cellsText(cells) {
  if (Array.isArray(cells)) return cells.length ? whole(cells.length) : DASH;
  return finite(cells) ? whole(cells) : DASH;
}

const levelClass = (level) => `level-${finite(level) && level >= 0 && level <= 4 ? Math.trunc(level) : "none"}`;

// A hazard's line in the risk table: its name, a level chip, and its figure if any.
function riskRow(name, part, figure) {
  const tr = el("tr", "bldg-risk-row");
  const level = part?.level;
  const chip = el("span", `bldg-chip ${levelClass(level)}`, finite(level) ? levelLabel(level) : levelLabel(-1));
  const td = el("td");
  td.append(chip, " ", el("span", "bldg-figure", figure || ""));
  tr.append(el("th", null, name), td);
  return tr;
}

// el: the container; record: GET /api/buildings/{id} (or null).
export function renderBuilding(el_, record) {
  el_.classList.add("bldg-card");
  if (!record) {
    el_.replaceChildren(el("p", "bldg-empty", "No building record · 无建筑信息"));
    return;
  }
  const head = el("div", "bldg-head");
  const zh = record.name || "";
  const en = record.name_en || "";
  const name = el("div", "bldg-name", zh || en || `Building · 建筑 ${record.id ?? DASH}`);
  if (zh) name.lang = "zh-CN";
  head.append(name);
  if (zh && en && en !== zh) head.append(el("div", "bldg-name-en", en));

  const facts = el("table", "bldg-facts");
  const rows = [
    ["Use · 用途", useText(record.use)],
    ["Floors · 层数", finite(record.floors) ? whole(record.floors) : DASH],
    ["Height · 高度", metres(record.height_m)],
    ["Floor area · 建筑面积", finite(record.floor_area_m2) ? `${whole(record.floor_area_m2)} m²` : DASH],
    ["Occupancy (estimate) · 估计人数", finite(record.occupancy) ? `≈ ${whole(record.occupancy)} persons · 人` : DASH],
    ["Cells · 网格单元", cellsText(record.cells)],
  ];
  for (const [name, value] of rows) {
    const tr = el("tr");
    tr.append(el("th", null, name), el("td", "bldg-value", value));
    facts.append(tr);
  }
  facts.rows[4].title = "an estimate from the floor area and the building's use, not a count · 按面积和用途估算，非实时计数";

  const risk = record.risk || {};
  const table = el("table", "bldg-risk");
  const crowd = risk.crowd || {};
  const flood = risk.flood || {};
  // a figure only where the hazard has data: a level of -1 (no data) shows no depth or density, even one the
  // record carries (a cell's stale or default value)
  const known = (part, v) => finite(v) && !(finite(part.level) && part.level < 0);
  table.append(
    riskRow("Overall · 综合", { level: risk.level }),
    riskRow("Crowd · 人群", crowd,
      known(crowd, crowd.density_max) ? `max ${crowd.density_max.toFixed(2)} person/m²` : ""),
    riskRow("Flood · 内涝", flood, known(flood, flood.depth_max_m) ? `max ${flood.depth_max_m.toFixed(2)} m` : ""),
    riskRow("Traffic · 交通", risk.traffic),
  );
  const riskTitle = el("div", "bldg-section", "Risk in its cells · 所在网格风险");
  const when = el("div", "bldg-time", record.t != null ? `as of · 截至 ${shanghaiTime(record.t)}` : "");
  el_.replaceChildren(head, facts, riskTitle, table, when);
}
