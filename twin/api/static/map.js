// The map: an SVG in the grid's own projection (metres), with pan and zoom.
//
// Coordinates: "grid" = the twin's projected CRS (x east, y north, metres); "local" = metres from the
// grid's north-west corner with y pointing down (SVG's way); "screen" = CSS pixels in the SVG.
// Everything that scales with the map sits in a ".world" group that carries the view transform. Markers
// (units, alert badges) stay the same size at any zoom, so they are drawn in screen space and re-placed
// when the view changes.
//
// Two SVGs are stacked: #base (base map, buildings, risk layer: changes on a tick or a pan) under #map
// (alert areas, badges, markers, and every pointer event). Moving markers then repaint only the top
// one, not the buildings and pictures under them.

export const SVG_NS = "http://www.w3.org/2000/svg";

export function svgElement(tag, attrs = {}, parent = null) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, value);
  if (parent) parent.appendChild(el);
  return el;
}

const MAX_PX_PER_M = 12;
const CLICK_SLOP_PX = 4;
const HEIGHT_BINS = [0, 12, 24, 50, 100, 200]; // building height classes [m], lighter when taller

export class MapView {
  constructor(svg, base, grid, projection, onViewChange, onClick) {
    this.svg = svg;
    this.base = base;
    this.worlds = [base, svg].map((s) => s.querySelector(".world"));
    this.projection = projection;
    const [xmin, ymin, xmax, ymax] = grid.bounds;
    this.x0 = xmin;
    this.y0 = ymax;
    this.width = xmax - xmin;
    this.height = ymax - ymin;
    this.view = { k: 1, tx: 0, ty: 0 };
    this.fitted = false;
    this.autoFit = true; // the view is the fitted one (no pan or zoom since): fitted again when the page changes
    // Candidate insets {left, top, right, bottom} [px] of the part of the map no panel covers (app.js sets it);
    // fit() uses the one that shows the district largest.
    this.insets = () => [{ left: 0, top: 0, right: 0, bottom: 0 }];
    this.onViewChange = onViewChange;
    this.onClick = onClick;
    for (const id of ["basemap", "risk", "held-mask-image", "held"]) {
      const image = base.querySelector("#" + id);
      image.setAttribute("width", this.width);
      image.setAttribute("height", this.height);
    }
    this.hatches = [...document.querySelectorAll("pattern.screen-hatch")];
    this.listen();
    new ResizeObserver(() => (this.autoFit ? this.fit() : this.onViewChange())).observe(svg);
  }

  // ---------------------------------------------------------------- coordinates
  localOfGrid(x, y) {
    return [x - this.x0, this.y0 - y];
  }

  screenOfLocal(lx, ly) {
    const v = this.view;
    return [lx * v.k + v.tx, ly * v.k + v.ty];
  }

  localOfLonLat(lon, lat) {
    const [x, y] = this.projection.toXY(lon, lat);
    return this.localOfGrid(x, y);
  }

  lonLatOfScreen(px, py) {
    const v = this.view;
    const x = (px - v.tx) / v.k + this.x0;
    const y = this.y0 - (py - v.ty) / v.k;
    return this.projection.toLonLat(x, y);
  }

  // ---------------------------------------------------------------- view
  viewport() {
    const r = this.svg.getBoundingClientRect();
    return { w: r.width || 1, h: r.height || 1 };
  }

  // The whole district in the part of the map that no panel covers (issue 18: an alert's marker is never under
  // the legend after a fit).
  fit() {
    const { w, h } = this.viewport();
    let best = null;
    const insets = this.insets(w, h);
    const whole = { left: 0, top: 0, right: 0, bottom: 0 }; // when no panel leaves room: the whole map
    for (const inset of insets.some((i) => w - i.left - i.right >= 40 && h - i.top - i.bottom >= 40) ? insets : [whole]) {
      const aw = w - inset.left - inset.right;
      const ah = h - inset.top - inset.bottom;
      if (aw < 40 || ah < 40) continue;
      const k = 0.96 * Math.min(aw / this.width, ah / this.height);
      if (!best || k > best.k) {
        best = { k, tx: inset.left + (aw - k * this.width) / 2, ty: inset.top + (ah - k * this.height) / 2 };
      }
    }
    this.fitK = best.k;
    this.fitted = true;
    this.setView(best.k, best.tx, best.ty);
    this.autoFit = true;
  }

  // Any view but fit()'s ends the automatic fitting (a pan, a zoom, a centring).
  setView(k, tx, ty) {
    this.autoFit = false;
    this.view = { k, tx, ty };
    for (const world of this.worlds) world.setAttribute("transform", `matrix(${k} 0 0 ${k} ${tx} ${ty})`);
    // hatching keeps its spacing on screen at any zoom
    if (k !== this.hatchK) {
      this.hatchK = k;
      for (const p of this.hatches) p.setAttribute("patternTransform", `scale(${1 / k}) rotate(45)`);
    }
    this.onViewChange();
  }

  zoomAt(px, py, factor) {
    const v = this.view;
    const k = Math.min(MAX_PX_PER_M, Math.max(0.5 * this.fitK, v.k * factor));
    const f = k / v.k;
    this.setView(k, px - (px - v.tx) * f, py - (py - v.ty) * f);
  }

  zoomCentre(factor) {
    const { w, h } = this.viewport();
    this.zoomAt(w / 2, h / 2, factor);
  }

  centreOn(lx, ly) {
    const { w, h } = this.viewport();
    const k = Math.max(this.view.k, 2 * this.fitK);
    this.setView(k, w / 2 - lx * k, h / 2 - ly * k);
  }

  // Drag to pan (pointer events, so mouse, pen and touch alike), wheel to zoom at the cursor; a press
  // that does not move is a click.
  listen() {
    let drag = null;
    this.svg.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      drag = { x: e.clientX, y: e.clientY, tx: this.view.tx, ty: this.view.ty, moved: false, id: e.pointerId };
    });
    this.svg.addEventListener("pointermove", (e) => {
      if (!drag || e.pointerId !== drag.id) return;
      const dx = e.clientX - drag.x;
      const dy = e.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < CLICK_SLOP_PX) return;
      if (!drag.moved) {
        drag.moved = true;
        this.svg.setPointerCapture(e.pointerId);
        this.svg.classList.add("dragging");
      }
      this.setView(this.view.k, drag.tx + dx, drag.ty + dy);
    });
    const end = (e) => {
      if (!drag || e.pointerId !== drag.id) return;
      const wasClick = !drag.moved && e.type === "pointerup";
      drag = null;
      this.svg.classList.remove("dragging");
      if (wasClick) {
        const r = this.svg.getBoundingClientRect();
        this.onClick(e.clientX - r.left, e.clientY - r.top, e.target);
      }
    };
    this.svg.addEventListener("pointerup", end);
    this.svg.addEventListener("pointercancel", end);
    this.svg.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = this.svg.getBoundingClientRect();
      this.zoomAt(e.clientX - r.left, e.clientY - r.top, Math.exp(-e.deltaY * 0.0015));
    }, { passive: false });
    this.svg.addEventListener("dblclick", (e) => {
      const r = this.svg.getBoundingClientRect();
      this.zoomAt(e.clientX - r.left, e.clientY - r.top, 2);
    });
  }

  // ---------------------------------------------------------------- layers
  setBasemap(url) {
    this.base.querySelector("#basemap").setAttribute("href", url);
  }

  // Building footprints (GeoJSON in grid metres) as one <path> per height class: a few elements
  // instead of one per building keeps panning smooth. Their rings are kept for buildingAt (a click).
  setBuildings(collection) {
    const paths = HEIGHT_BINS.map(() => []);
    this.footprints = [];
    for (const feature of collection.features) {
      const h = feature.properties.height ?? 0;
      let bin = 0;
      while (bin + 1 < HEIGHT_BINS.length && h >= HEIGHT_BINS[bin + 1]) bin++;
      const g = feature.geometry;
      const polygons = g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : [];
      for (const rings of polygons) for (const ring of rings) paths[bin].push(this.ringPath(ring));
      const all = polygons.flat();
      if (feature.properties.id != null && all.length) {
        const xs = all.flatMap((r) => r.map((p) => p[0]));
        const ys = all.flatMap((r) => r.map((p) => p[1]));
        this.footprints.push({ id: String(feature.properties.id), props: feature.properties, rings: all,
          box: [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)] });
      }
    }
    const group = this.base.querySelector("#buildings");
    group.replaceChildren();
    paths.forEach((parts, bin) => {
      if (parts.length) svgElement("path", { d: parts.join(""), class: `bldg h${bin}` }, group);
    });
  }

  // The building footprint under a screen point ({id, props, rings} in grid metres), null if none.
  buildingAt(px, py) {
    const v = this.view;
    const x = (px - v.tx) / v.k + this.x0;
    const y = this.y0 - (py - v.ty) / v.k;
    for (const b of this.footprints || []) {
      const [x0, y0, x1, y1] = b.box;
      if (x < x0 || x > x1 || y < y0 || y > y1) continue;
      let inside = false; // even-odd over every ring: holes excluded
      for (const ring of b.rings) {
        for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
          const [xi, yi] = ring[i];
          const [xj, yj] = ring[j];
          if ((yi > y) !== (yj > y) && x < xi + ((y - yi) / (yj - yi)) * (xj - xi)) inside = !inside;
        }
      }
      if (inside) return b;
    }
    return null;
  }

  // "M x y L ... Z" of a ring of [x, y] in grid metres.
  ringPath(ring) {
    return localPath(ring.map(([x, y]) => this.localOfGrid(x, y)));
  }

  setRisk(url, opacity) {
    const image = this.base.querySelector("#risk");
    if (url === null) image.removeAttribute("href");
    else image.setAttribute("href", url);
    image.style.opacity = opacity;
    this.base.querySelector("#held").style.opacity = opacity;
  }

  // The grey hatch over the cells whose level is held (no fresh data): `url` is a mask picture, one
  // pixel per cell, opaque where held (null: none).
  setHeld(url, cells) {
    const image = this.base.querySelector("#held-mask-image");
    const rect = this.base.querySelector("#held");
    if (url === null) image.removeAttribute("href");
    else image.setAttribute("href", url);
    rect.style.display = url === null || !cells ? "none" : "inline";
    rect.dataset.cells = String(url === null ? 0 : cells);
  }

  // A round length for the scale bar (about 120 px long) and its width in pixels.
  scaleBar() {
    const target = 120 / this.view.k;
    const pow = 10 ** Math.floor(Math.log10(target));
    const metres = [5, 2, 1].map((m) => m * pow).find((m) => m <= target) || pow;
    return { metres, px: metres * this.view.k };
  }
}

// "M x y L ... Z" of a ring of local points, to 0.1 m.
export function localPath(points) {
  let d = "";
  for (let i = 0; i < points.length; i++) d += (i ? "L" : "M") + points[i][0].toFixed(1) + " " + points[i][1].toFixed(1);
  return d + "Z";
}
