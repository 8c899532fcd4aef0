// Road and place names on the map, from the twin's own district data (GET /api/basemap/labels), in Chinese or
// English, drawn in screen space so they keep their size at any zoom.
//
// Each render: the labels whose kind and rank suit the zoom (k = px per metre) are taken most important first
// (rank ascending, then the longer road first) and a label is shown only if its box overlaps no label shown
// before it (greedy decluttering, the usual way map labels are placed). Boxes are axis-aligned: a rotated road
// name gets the box around its rotated rectangle, which is a little larger than the text (on the safe side).
// Text widths are estimated from the characters (a CJK character ≈ 1 em, any other ≈ 0.55 em, more for bold
// names: CHAR_EM) so that placing 2,000 labels reads no layout at all; elements are made once per label and only
// moved, shown or hidden afterwards.

import { svgElement } from "./map.js";

// Font size by kind [px]: the estimate of a label's width and the drawn text use the same figure.
export const FONT_PX = { district: 15, place: 13, water: 12.5, metro: 11.5, road: 11, poi: 10.5 };
// Width of a character by kind [em]: [CJK, other]. Bold names (districts, places, metro) are wider, and district
// names are letter-spaced by 0.12 em (modules.css .lbl-district) [design, measured against DejaVu Sans and
// WenQuanYi Micro Hei in Chromium: within 15 % (tests/browser/test_page_modules.py)].
const CHAR_EM = { district: [1.12, 0.75], place: [1, 0.63], metro: [1, 0.63] };
const PLAIN_EM = [1, 0.55];
const LINE_EM = 1.2; // height of a line of text, in em [design]
const HALO_PX = 3; // width of the dark halo round the letters [px] (.lbl stroke-width)
const GAP_PX = 3; // the least space between two labels [px] [design]
const HASH_PX = 96; // cell of the spatial hash that finds neighbouring boxes [px] [design]

// The least zoom (k, px per metre) at which a label is drawn [design]: names of districts, places and water
// always; metro stations from 0.5; points of interest from 2; roads by rank (see roadMinK).
const KIND_MIN_K = { district: 0, place: 0, water: 0, metro: 0.5, poi: 2 };
// Road ranks (GET /api/basemap/labels: 1 most important; major roads 2, minor roads 4, paths 5): <= 3 major,
// 4 minor, >= 5 paths and pedestrian streets.
export function roadMinK(rank) {
  if (rank <= 3) return 0.25;
  if (rank <= 4) return 1;
  return 3;
}
export const minZoom = (kind, rank) => (kind === "road" ? roadMinK(rank) : KIND_MIN_K[kind] ?? 1);

// Whether a code point is drawn about 1 em wide: CJK ideographs, kana, hangul, full-width forms and
// punctuation.
function wide(cp) {
  return (cp >= 0x2e80 && cp <= 0xa4cf) || (cp >= 0xac00 && cp <= 0xd7af) || (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) || (cp >= 0xffe0 && cp <= 0xffe6) ||
    cp >= 0x20000;
}

// Estimated width of a text [px] at a font size [px], with the widths [em] of a CJK and of any other character.
export function textWidth(text, px, [cjkEm, otherEm] = PLAIN_EM) {
  let em = 0;
  for (const ch of text) em += wide(ch.codePointAt(0)) ? cjkEm : otherEm;
  return em * px;
}

// The text shown in a language: Chinese shows `name` (else `name_en`), English `name_en` (else `name`).
const textIn = (label, lang) =>
  (lang === "en" ? label.name_en || label.name : label.name || label.name_en) || "";

export class MapLabels {
  // group: an SVG <g> in screen space (no transform); map: the MapView (localOfGrid, screenOfLocal, view.k,
  // viewport()).
  constructor(group, map) {
    this.group = group;
    this.map = map;
    this.lang = "zh";
    this.items = []; // most important first
    this.size = map.viewport(); // {w, h} [px], kept up to date by a ResizeObserver: no layout read per render
    this.lastRenderMs = null;
    this.shown = 0;
    const svg = group.ownerSVGElement;
    if (svg && typeof ResizeObserver !== "undefined") {
      new ResizeObserver((entries) => {
        const r = entries[entries.length - 1].contentRect;
        if (r.width > 0 && r.height > 0) this.size = { w: r.width, h: r.height };
      }).observe(svg);
    }
  }

  // body: GET /api/basemap/labels, {crs, labels: [{id, kind, name, name_en, x, y (grid metres), angle_deg
  // (counter-clockwise, maths convention), rank, length_m}]}.
  load(body) {
    this.group.replaceChildren();
    const items = [];
    for (const label of body?.labels || []) {
      const kind = label.kind || "place";
      const px = FONT_PX[kind] ?? 11;
      const angle = Number.isFinite(label.angle_deg) ? label.angle_deg : 0; // along the line: roads and rivers
      const rad = (angle * Math.PI) / 180;
      const cos = Math.abs(Math.cos(rad));
      const sin = Math.abs(Math.sin(rad));
      const h = px * LINE_EM + HALO_PX;
      const item = {
        id: String(label.id ?? items.length),
        kind,
        rank: Number.isFinite(label.rank) ? label.rank : 9,
        length: Number.isFinite(label.length_m) ? label.length_m : 0,
        local: this.map.localOfGrid(label.x, label.y),
        px,
        // SVG turns clockwise with y down: a counter-clockwise angle (y north) is its negative
        rotate: angle ? ` rotate(${(-angle).toFixed(1)})` : "",
        minK: minZoom(kind, label.rank),
        text: {}, width: {}, half: {}, // by language: text, its width [px], half extents of its box [px]
        el: null, lang: null, shown: false,
      };
      for (const lang of ["zh", "en"]) {
        const text = textIn(label, lang);
        const w = textWidth(text, px, CHAR_EM[kind]);
        item.text[lang] = text;
        item.width[lang] = w;
        item.half[lang] = [(w * cos + h * sin) / 2 + GAP_PX / 2, (w * sin + h * cos) / 2 + GAP_PX / 2];
      }
      items.push(item);
    }
    items.sort((a, b) => a.rank - b.rank || b.length - a.length);
    this.items = items;
    this.render();
  }

  setLanguage(lang) {
    this.lang = lang === "en" ? "en" : "zh";
    this.render();
  }

  // Place the labels for the current view. Costs well under 8 ms for 2,000 labels (tests/browser).
  render() {
    const start = performance.now();
    const k = this.map.view.k;
    const { w: vw, h: vh } = this.size;
    const lang = this.lang;
    const hash = new Map(); // hash cell -> [[x0, y0, x1, y1], ...] of the boxes shown
    let shown = 0;
    for (const item of this.items) {
      let box = null;
      const text = item.text[lang];
      // a road or river shorter on screen than its name is not named
      if (text && k >= item.minK && !(item.length > 0 && item.length * k < item.width[lang])) {
        const [sx, sy] = this.map.screenOfLocal(item.local[0], item.local[1]);
        const [hw, hh] = item.half[lang];
        const candidate = [sx - hw, sy - hh, sx + hw, sy + hh];
        if (candidate[2] > 0 && candidate[0] < vw && candidate[3] > 0 && candidate[1] < vh && !collides(hash, candidate)) {
          box = candidate;
          insert(hash, box);
          this.show(item, sx, sy, lang);
          shown++;
        }
      }
      if (!box && item.shown) {
        item.el.setAttribute("display", "none");
        item.shown = false;
      }
    }
    this.shown = shown;
    this.group.dataset.shown = String(shown);
    this.lastRenderMs = performance.now() - start;
    return shown;
  }

  show(item, sx, sy, lang) {
    if (!item.el) {
      item.el = svgElement("text", { class: `lbl lbl-${item.kind}`, "font-size": item.px, "data-id": item.id },
        this.group);
    }
    const el = item.el;
    if (item.lang !== lang) {
      el.textContent = item.text[lang];
      el.setAttribute("lang", lang === "zh" ? "zh-CN" : "en");
      item.lang = lang;
    }
    el.setAttribute("transform", `translate(${sx.toFixed(1)} ${sy.toFixed(1)})${item.rotate}`);
    if (!item.shown) {
      el.removeAttribute("display");
      item.shown = true;
    }
  }

  // The ids of the labels shown, most important first (for tests and the page's checks).
  visibleIds() {
    return this.items.filter((item) => item.shown).map((item) => item.id);
  }
}

// ------------------------------------------------------------------ boxes
function hashCells(box, visit) {
  const i0 = Math.floor(box[0] / HASH_PX);
  const i1 = Math.floor(box[2] / HASH_PX);
  const j0 = Math.floor(box[1] / HASH_PX);
  const j1 = Math.floor(box[3] / HASH_PX);
  for (let i = i0; i <= i1; i++) for (let j = j0; j <= j1; j++) if (visit(i * 65536 + j)) return true;
  return false;
}

function collides(hash, box) {
  return hashCells(box, (key) => {
    const boxes = hash.get(key);
    if (!boxes) return false;
    for (const b of boxes) if (b[0] < box[2] && box[0] < b[2] && b[1] < box[3] && box[1] < b[3]) return true;
    return false;
  });
}

function insert(hash, box) {
  hashCells(box, (key) => {
    const boxes = hash.get(key);
    if (boxes) boxes.push(box);
    else hash.set(key, [box]);
    return false;
  });
}
