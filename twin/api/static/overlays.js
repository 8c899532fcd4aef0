// What moves on the map: alert areas (in #world), alert markers and unit / vehicle markers (in screen
// space, so they keep their size). Each render function only touches what changed.
//
// Every active alert has a marker of a fixed size on screen (a pin in its level's colour with its hazard's
// letter, its tip at the area's inside point), whatever the zoom: a one-cell flood alert is a fraction of a
// pixel at the district's scale, its outline alone would not be seen (issue 18).

import { localPath, svgElement } from "./map.js";

export const HAZARD_LETTER = { crowd: "C", crowd_forecast: "C", flood: "F", rain: "R", traffic: "T" };
const FORECAST_BADGE_DX = 22; // px: a forecast's pin beside the observed one of the same place (a pin is 22 px wide)
// The pin: a round head of radius 11 px centred 19 px above its tip (22 × 30 px in all; at least 16 px both ways,
// the smallest marker issue 18 allows) [design].
const PIN_PATH = "M0 0C-2.5-5-11-10.5-11-19A11 11 0 1 1 11-19C11-10.5 2.5-5 0 0Z";
const PIN_LETTER_Y = -15; // baseline of the letter, in the head
const PIN_W = 22; // px: the pin's width and height (PIN_PATH)
const PIN_H = 30;
const PIN_GAP = 2; // px between two pins set aside one another [design]
const SPREAD_STEPS = 6; // a pin moves at most this many pin widths aside to stay clear of another [design]

// A forecast alert (CAP certainty Likely, Possible or Unlikely: the trend's projection), as opposed to an
// observed one (certainty Observed; an alert without a certainty counts as observed).
export const isForecast = (p) => Boolean(p.certainty) && p.certainty !== "Observed";
const UNIT_LETTER = { police: "P", fire: "F", medical: "M" };

export class Overlays {
  constructor(map, svg) {
    this.map = map;
    this.areaLayer = svg.querySelector("#areas");
    this.badgeLayer = svg.querySelector("#badges");
    this.unitLayer = svg.querySelector("#unit-markers");
    this.vehicleLayer = svg.querySelector("#vehicle-markers"); // under the field units
    this.pinLayer = svg.querySelector("#pin");
    this.areas = new Map(); // alert id -> {path, badge, centre: [lx, ly], key}
    this.markers = new Map(); // entity id -> {el, local: [lx, ly], kind, onScene}
    this.selected = null;
    this.pin = null; // local coordinates of the last map click
  }

  // ---------------------------------------------------------------- alerts
  // alerts: Map id -> GeoJSON Feature (lon/lat). Re-projects only alerts whose message changed.
  renderAlerts(alerts) {
    for (const [id, entry] of this.areas) {
      if (!alerts.has(id)) {
        entry.path.remove();
        entry.badge.remove();
        entry.leader?.remove();
        this.areas.delete(id);
      }
    }
    // forecasts under observed alerts, and lower levels first, so observed red areas are drawn on top
    const ordered = [...alerts.values()].sort((a, b) =>
      isForecast(b.properties) - isForecast(a.properties) || a.properties.level - b.properties.level);
    for (const feature of ordered) {
      const p = feature.properties;
      const key = `${p.message_id}|${p.level}`;
      let entry = this.areas.get(p.identifier);
      if (!entry) {
        entry = {
          path: svgElement("path", { "data-id": p.identifier, "vector-effect": "non-scaling-stroke" }, this.areaLayer),
          badge: this.makeBadge(p.identifier),
          key: null,
        };
        this.areas.set(p.identifier, entry);
      }
      const forecast = isForecast(p);
      entry.id = p.identifier;
      entry.level = p.level;
      if (entry.key !== key || entry.forecast !== forecast) {
        entry.key = key;
        entry.forecast = forecast;
        const { d, centre } = this.areaPath(feature.geometry);
        entry.path.setAttribute("d", d);
        entry.centre = centre;
        this.placeBadge(entry);
      }
      const cls = `level-${p.level}` + (forecast ? " forecast" : "") + (p.suppressed ? " suppressed" : "") +
        (p.identifier === this.selected ? " selected" : "");
      entry.path.setAttribute("class", `alert-area ${cls}`);
      entry.badge.setAttribute("class", `alert-badge ${cls}` + (p.acknowledged_by.length ? " acked" : ""));
      entry.badge.querySelector("text").textContent = HAZARD_LETTER[p.hazard] || "!";
      entry.badge.querySelector("title").textContent = (p.suppressed ? `${p.suppressed.by} · not delivered · ` : "") +
        (forecast ? "forecast · 预测 " : "") +
        `${p.level_name} ${p.hazard}: ${p.area_desc || ""}`;
      this.areaLayer.appendChild(entry.path); // keep the level order
    }
    this.spreadBadges();
  }

  makeBadge(id) {
    // a pin with the hazard's letter, its tip on the area (unit markers are plain circles, so the two never look alike)
    const g = svgElement("g", { "data-id": id }, this.badgeLayer);
    svgElement("path", { d: PIN_PATH }, g);
    svgElement("text", { y: PIN_LETTER_Y }, g);
    svgElement("title", {}, g);
    return g;
  }

  // SVG path of a MultiPolygon (lon/lat) and a point inside its largest ring, in local metres.
  areaPath(geometry) {
    if (!geometry) return { d: "", centre: null };
    let d = "";
    let best = { area: -1, centre: null };
    for (const polygon of geometry.coordinates) {
      for (const ring of polygon) {
        const local = ring.map(([lon, lat]) => this.map.localOfLonLat(lon, lat));
        d += localPath(local);
        const area = Math.abs(ringArea(local));
        if (area > best.area) best = { area, centre: interiorPoint(local) };
      }
    }
    return { d, centre: best.centre };
  }

  // Where the pin's tip goes on screen (its area's inside point; a forecast's beside it): spreadBadges draws it.
  placeBadge(entry) {
    if (!entry.centre) {
      entry.anchor = null;
      return;
    }
    const [x, py] = this.map.screenOfLocal(...entry.centre);
    entry.anchor = [x + (entry.forecast ? FORECAST_BADGE_DX : 0), py];
  }

  // Every pin at its anchor, unless another pin is already there: then it moves aside (right, left, two widths
  // right, ...; at most SPREAD_STEPS widths, inside the map) with a thin line back to its anchor, so that no pin
  // hides another (at the district's scale two places' alerts are a few pixels apart). Red first, then by level:
  // the most severe pins keep their place. A grid of pin-sized buckets keeps it linear in the number of pins.
  spreadBadges() {
    const entries = [...this.areas.values()].filter((e) => e.anchor);
    entries.sort((a, b) => (b.level ?? 0) - (a.level ?? 0) || Number(a.forecast) - Number(b.forecast) ||
      a.anchor[1] - b.anchor[1] || a.anchor[0] - b.anchor[0] || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const cw = PIN_W + PIN_GAP;
    const ch = PIN_H + PIN_GAP;
    const buckets = new Map(); // "i,j" -> [[x, y], ...] tips placed
    const clear = (x, y) => {
      const i = Math.floor(x / cw);
      const j = Math.floor(y / ch);
      for (let di = -1; di <= 1; di++) {
        for (let dj = -1; dj <= 1; dj++) {
          for (const [ox, oy] of buckets.get(`${i + di},${j + dj}`) || []) {
            if (Math.abs(ox - x) < cw && Math.abs(oy - y) < ch) return false;
          }
        }
      }
      return true;
    };
    const { w } = entries.length > 1 ? this.map.viewport() : { w: Infinity };
    for (const entry of this.areas.values()) if (!entry.anchor) entry.leader?.remove();
    for (const entry of entries) {
      const [x, y] = entry.anchor;
      let dx = 0;
      for (let k = 1; k <= 2 * SPREAD_STEPS && !clear(x + dx, y); k++) {
        const step = Math.ceil(k / 2) * cw * (k % 2 ? 1 : -1);
        if (x + step - PIN_W / 2 < 0 || x + step + PIN_W / 2 > w) continue;
        dx = step;
      }
      if (!clear(x + dx, y)) dx = 0; // nowhere free near it: on its anchor, as before
      const key = `${Math.floor((x + dx) / cw)},${Math.floor(y / ch)}`;
      if (!buckets.has(key)) buckets.set(key, []);
      buckets.get(key).push([x + dx, y]);
      entry.badge.setAttribute("transform", `translate(${(x + dx).toFixed(1)},${y.toFixed(1)})`);
      if (dx) {
        entry.leader ??= svgElement("line", { class: "pin-leader" }, null);
        if (!entry.leader.isConnected) this.badgeLayer.prepend(entry.leader);
        for (const [k, v] of [["x1", x + dx], ["y1", y], ["x2", x], ["y2", y]]) {
          entry.leader.setAttribute(k, v.toFixed(1));
        }
      } else {
        entry.leader?.remove();
      }
    }
  }

  select(id) {
    this.selected = id;
    for (const [aid, entry] of this.areas) {
      entry.path.classList.toggle("selected", aid === id);
      entry.badge.classList.toggle("selected", aid === id);
    }
  }

  // ---------------------------------------------------------------- outlines
  // The outline of the chosen node of the management tree (a GeoJSON geometry in lon/lat; null: none).
  setOutline(geometry) {
    this.outline ??= document.getElementById("drill-outline");
    this.outline.setAttribute("d", geometry ? this.geometryPath(geometry) : "");
  }

  // The outline of the building clicked (rings of [x, y] in grid metres; null: none).
  setBuilding(rings) {
    this.building ??= document.getElementById("building-selected");
    this.building.setAttribute("d", rings ? rings.map((r) => this.map.ringPath(r)).join("") : "");
  }

  // SVG path (local metres) of a Polygon or MultiPolygon in lon/lat.
  geometryPath(geometry) {
    const polygons = geometry.type === "Polygon" ? [geometry.coordinates]
      : geometry.type === "MultiPolygon" ? geometry.coordinates : [];
    let d = "";
    for (const polygon of polygons) {
      for (const ring of polygon) d += localPath(ring.map(([lon, lat]) => this.map.localOfLonLat(lon, lat)));
    }
    return d;
  }

  // ---------------------------------------------------------------- units and vehicles
  // entities: iterable of {id, kind, unit_type, lon, lat, ...}; onScene: Set of unit ids on scene.
  renderUnits(entities, onScene) {
    for (const e of entities) {
      let m = this.markers.get(e.id);
      if (!m) {
        m = this.makeMarker(e);
        this.markers.set(e.id, m);
      }
      m.local = this.map.localOfLonLat(e.lon, e.lat);
      const title = markerTitle(e);
      if (m.titleText !== title) m.title.textContent = m.titleText = title;
      this.setOnScene(m, onScene.has(e.id));
      this.placeMarker(m);
    }
  }

  updateOnScene(onScene) {
    for (const [id, m] of this.markers) this.setOnScene(m, onScene.has(id));
  }

  setOnScene(m, on) {
    if (m.onScene !== on) {
      m.onScene = on;
      m.el.classList.toggle("on-scene", on);
    }
  }

  makeMarker(e) {
    const isUnit = e.kind === "unit";
    const type = e.unit_type || "other";
    const el = svgElement("g", { class: isUnit ? `unit unit-${type}` : "vehicle", "data-id": e.id },
      isUnit ? this.unitLayer : this.vehicleLayer);
    if (isUnit) {
      svgElement("circle", { class: "ring", r: 11 }, el);
      svgElement("circle", { r: 7 }, el);
      const text = svgElement("text", { y: 3.5 }, el);
      text.textContent = UNIT_LETTER[type] || "U";
    } else {
      svgElement("circle", { r: 3 }, el);
    }
    const title = svgElement("title", {}, el);
    return { el, title, local: [0, 0], kind: e.kind, onScene: false };
  }

  placeMarker(m) {
    const [px, py] = this.map.screenOfLocal(m.local[0], m.local[1]);
    m.el.setAttribute("transform", `translate(${px.toFixed(1)},${py.toFixed(1)})`);
  }

  removeMissing(ids) {
    for (const [id, m] of this.markers) {
      if (!ids.has(id)) {
        m.el.remove();
        this.markers.delete(id);
      }
    }
  }

  // ---------------------------------------------------------------- view changes
  placeAll() {
    for (const entry of this.areas.values()) this.placeBadge(entry);
    this.spreadBadges();
    for (const m of this.markers.values()) this.placeMarker(m);
    this.placePin();
  }

  setPin(local) {
    this.pin = local;
    this.pinLayer.replaceChildren();
    if (local) {
      svgElement("circle", { r: 6 }, this.pinLayer);
      svgElement("path", { d: "M-11 0H-4M4 0H11M0 -11V-4M0 4V11" }, this.pinLayer);
    }
    this.placePin();
  }

  placePin() {
    if (!this.pin) return;
    const [px, py] = this.map.screenOfLocal(...this.pin);
    this.pinLayer.setAttribute("transform", `translate(${px.toFixed(1)},${py.toFixed(1)})`);
  }
}

function ringArea(points) {
  let a = 0;
  for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
    a += points[j][0] * points[i][1] - points[i][0] * points[j][1];
  }
  return a / 2;
}

// Area-weighted centroid of a ring (the vertex mean for a degenerate one).
function ringCentre(points) {
  const a = ringArea(points);
  if (Math.abs(a) < 1e-9) {
    const n = points.length || 1;
    return [points.reduce((s, p) => s + p[0], 0) / n, points.reduce((s, p) => s + p[1], 0) / n];
  }
  let cx = 0;
  let cy = 0;
  for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
    const cross = points[j][0] * points[i][1] - points[i][0] * points[j][1];
    cx += (points[j][0] + points[i][0]) * cross;
    cy += (points[j][1] + points[i][1]) * cross;
  }
  return [cx / (6 * a), cy / (6 * a)];
}

// A point inside a ring, for its badge: the middle of the widest inside stretch of the horizontal line
// through the centroid (the centroid itself falls outside a curved strip along a river bank).
function interiorPoint(points) {
  const [cx, cy] = ringCentre(points);
  const xs = [];
  for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
    const [xi, yi] = points[i];
    const [xj, yj] = points[j];
    if ((yi > cy) !== (yj > cy)) xs.push(xi + ((cy - yi) / (yj - yi)) * (xj - xi));
  }
  xs.sort((a, b) => a - b);
  let best = null;
  for (let k = 0; k + 1 < xs.length; k += 2) {
    if (!best || xs[k + 1] - xs[k] > best[1] - best[0]) best = [xs[k], xs[k + 1]];
  }
  return best ? [(best[0] + best[1]) / 2, cy] : [cx, cy];
}

function markerTitle(e) {
  const what = e.kind === "unit" ? `${e.unit_type || ""} unit` : "vehicle";
  const speed = e.speed_kmh == null ? "" : ` · ${e.speed_kmh.toFixed(0)} km/h`;
  return `${e.id} (${what.trim()})${speed}`;
}
