// Road links on the map (GET /api/links): each directed link coloured by its GB/T 33171 congestion level,
// grey and thin where it has no speed, thicker with the speed's confidence.
//
// The links' geometry comes once (the whole collection); after each tick only the links with a speed are
// fetched (?with_speed=true&geometry=false), and every other link is "no data". The links are drawn as a few
// <path> elements, one per (level, width) style, in the base map's world group: a tick rebuilds at most those
// few paths and only when a link changed style, so panning and zooming stay as cheap as before. A click is
// hit-tested here against the links' geometry (the alert layer above takes the pointer events).

import { getJson } from "./api.js";
import { svgElement } from "./map.js";

const HIT_PX = 6; // a click this close to a link (CSS pixels) selects it
const WIDTH_CLASSES = 4; // confidence 0-0.25, 0.25-0.5, 0.5-0.75, 0.75-1 -> w1..w4 (w0: no data)
export const LEVEL_LABELS = {
  "-1": "no data · 无数据", 0: "smooth · 畅通", 1: "basically smooth · 基本畅通", 2: "light · 轻度拥堵",
  3: "moderate · 中度拥堵", 4: "severe · 严重拥堵",
};

export const widthClass = (p) =>
  p.speed_kmh == null ? 0 : 1 + Math.min(WIDTH_CLASSES - 1, Math.floor((p.confidence || 0) * WIDTH_CLASSES));

export class RoadLinks {
  constructor(map, group) {
    this.map = map;
    this.group = group;
    this.links = []; // link index -> {props, local: [[lx, ly], ...], d, style}
    this.byId = new Map(); // link_id -> index
    this.available = false; // the twin has a road network
    this.visible = true;
    this.t = null;
    this.pending = null; // the last update not drawn yet: Map link_id -> properties of links with a speed
    this.drawn = new Map(); // style key -> <path>
    this.selected = null;
  }

  // The whole collection with geometry; false if the twin runs without a road network (HTTP 404).
  async load() {
    let body;
    try {
      body = await getJson("/api/links");
    } catch (err) {
      if (!err.message.endsWith("HTTP 404")) console.warn("road links:", err.message);
      return false;
    }
    this.links = body.features.map((f) => {
      const local = f.geometry.coordinates.map(([lon, lat]) => this.map.localOfLonLat(lon, lat));
      let d = "";
      for (let i = 0; i < local.length; i++) d += (i ? "L" : "M") + local[i][0].toFixed(1) + " " + local[i][1].toFixed(1);
      return { props: f.properties, local, d, style: null };
    });
    this.byId = new Map(this.links.map((l, k) => [l.props.link_id, k]));
    this.available = true;
    this.pending = new Map(body.features.filter((f) => f.properties.speed_kmh != null)
      .map((f) => [f.properties.link_id, f.properties]));
    this.t = body.t;
    return true;
  }

  // After a tick: the links with a speed now (no geometry). Resolves to true when something is to be drawn.
  async refresh() {
    if (!this.available) return false;
    const body = await getJson("/api/links?with_speed=true&geometry=false");
    this.pending = new Map(body.features.map((f) => [f.properties.link_id, f.properties]));
    this.t = body.t;
    return true;
  }

  // Apply the last update: new properties, and the style paths of the styles that changed.
  render() {
    if (!this.pending) return;
    const withSpeed = this.pending;
    this.pending = null;
    const changed = new Set();
    for (const link of this.links) {
      const fresh = withSpeed.get(link.props.link_id);
      if (fresh) link.props = fresh;
      else if (link.props.speed_kmh != null) link.props = noData(link.props);
      const style = `${link.props.level}|${widthClass(link.props)}`;
      if (style !== link.style) {
        if (link.style !== null) changed.add(link.style);
        changed.add(style);
        link.style = style;
      }
    }
    if (changed.size) this.draw(changed);
    this.group.dataset.t = String(this.t ?? "");
    this.group.dataset.withSpeed = String(withSpeed.size);
  }

  draw(styles) {
    const parts = new Map([...styles].map((s) => [s, []]));
    const ids = new Map([...styles].map((s) => [s, []]));
    for (const link of this.links) {
      if (!parts.has(link.style)) continue;
      parts.get(link.style).push(link.d);
      ids.get(link.style).push(link.props.link_id);
    }
    for (const [style, list] of parts) {
      let path = this.drawn.get(style);
      if (!list.length) {
        path?.remove();
        this.drawn.delete(style);
        continue;
      }
      if (!path) {
        const [level, width] = style.split("|");
        path = svgElement("path", { class: `road-link lvl-${level} w${width}`, "vector-effect": "non-scaling-stroke",
          "data-level": level, "data-width": width });
        this.drawn.set(style, path);
      }
      path.setAttribute("d", list.join(""));
      path.dataset.links = ids.get(style).join(" ");
    }
    // no data under everything, then by level and width: the worst and surest links on top
    const order = [...this.drawn.entries()].sort(([a], [b]) => {
      const [la, wa] = a.split("|").map(Number);
      const [lb, wb] = b.split("|").map(Number);
      return la - lb || wa - wb;
    });
    for (const [, path] of order) this.group.insertBefore(path, this.highlight ?? null);
  }

  setVisible(on) {
    this.visible = on;
    this.group.style.display = on ? "" : "none";
  }

  // The link nearest a click at screen (px, py), within HIT_PX; among links equally near (the two directions of
  // a street) the one with the surer speed. Null when none.
  hit(px, py) {
    if (!this.available || !this.visible) return null;
    const v = this.map.view;
    const lx = (px - v.tx) / v.k;
    const ly = (py - v.ty) / v.k;
    const tol = HIT_PX / v.k;
    let best = null;
    for (const link of this.links) {
      const dist = distanceToLine(lx, ly, link.local, tol);
      if (dist > tol) continue;
      const score = dist * v.k - 2 * (link.props.confidence || 0); // px, the surer link wins a near tie
      if (!best || score < best.score) best = { score, link };
    }
    return best ? best.link.props : null;
  }

  // Outline the selected link (null: none).
  select(id) {
    this.selected = id;
    this.highlight?.remove();
    this.highlight = null;
    const k = this.byId.get(id);
    if (k === undefined) return;
    this.highlight = svgElement("path", { class: "road-link-selected", d: this.links[k].d,
      "vector-effect": "non-scaling-stroke", "data-link": String(id) }, this.group);
  }

  props(id) {
    const k = this.byId.get(id);
    return k === undefined ? null : this.links[k].props;
  }
}

function noData(p) {
  return { ...p, speed_kmh: null, speed_window_kmh: null, samples: 0, vehicles: 0, confidence: 0,
    travel_time_s: null, level: -1, congestion_kmh: null, tpi: null, warning: -1, incident: -1, loops: 0 };
}

// Distance from (x, y) to a polyline, stopping early once below `stop`.
function distanceToLine(x, y, pts, stop) {
  let best = Infinity;
  for (let i = 0; i + 1 < pts.length; i++) {
    const [ax, ay] = pts[i];
    const [bx, by] = pts[i + 1];
    const dx = bx - ax;
    const dy = by - ay;
    const len2 = dx * dx + dy * dy;
    const t = len2 > 0 ? Math.max(0, Math.min(1, ((x - ax) * dx + (y - ay) * dy) / len2)) : 0;
    const d = Math.hypot(x - ax - t * dx, y - ay - t * dy);
    if (d < best) best = d;
    if (best < stop * 0.05) break;
  }
  return best;
}
