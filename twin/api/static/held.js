// Cells whose shown warning level is held: the hazard has no fresh data this tick, so the twin keeps
// its last level (models/risk.py rule 4). The map hatches them grey ("no data, level held").
//
// The twin's `level_nodata` layer flags, per cell, the hazards without data this tick (bits: 1 crowd,
// 2 flood, 4 traffic). A bit is also set where a hazard never had data (level -1: most of the district
// has no crowd counter), and those cells stay transparent as before. So:
//   - a hazard's layer (level_crowd, ...): held where its bit is set and its level is 0 or above;
//   - the overall layer: held where the highest held hazard level is above every hazard that has fresh
//     data, i.e. the colour shown comes from a silent hazard (a fresh red next to a silent traffic
//     detector is not greyed).
// The pictures are the server's own: `level_nodata.png` (one grey per bitmask value) and the hazards'
// `level_*.png?nodata=show` (-1 drawn too); each pixel is read back to its value with the RGBA that
// the layer's legend lists. That work (four pictures of 100 000 cells after every tick) runs in a
// worker (held-worker.js), off the page's main thread; in the page itself only if no worker starts.

const HAZARD_LAYERS = { level_crowd: 1, level_flood: 2, level_traffic: 4 };
const HAZARD_ENTRIES = Object.entries(HAZARD_LAYERS);
export const HELD_LAYERS = new Set(["level", ...Object.keys(HAZARD_LAYERS)]);

// The level a layer shows at cell i is held: `bits` is the cell's level_nodata, `levels[hazard][i]` the
// hazards' levels (-1 never had data).
export function isHeld(layer, bits, levels, i = 0) {
  if (!bits) return false;
  let held = -1;
  let fresh = -1;
  for (const [hazard, bit] of HAZARD_ENTRIES) {
    if (layer !== "level" && layer !== hazard) continue;
    const lv = levels[hazard]?.[i] ?? -1;
    if (bits & bit) held = Math.max(held, lv);
    else fresh = Math.max(fresh, lv);
  }
  return held >= 0 && held > fresh;
}

// RGBA -> value, from a legend's entries; nearest colour, since a canvas gives translucent pixels back
// to within a unit or two (premultiplied alpha).
class Palette {
  constructor(entries) {
    this.entries = entries.map((e) => [e.value, e.rgba]);
    this.cache = new Map();
  }

  value(r, g, b, a) {
    const key = ((r << 24) | (g << 16) | (b << 8) | a) >>> 0;
    let v = this.cache.get(key);
    if (v === undefined) {
      let best = Infinity;
      for (const [value, [er, eg, eb, ea]] of this.entries) {
        // transparent: colour means nothing
        const d = a === 0 || ea === 0 ? (a - ea) ** 2 : (r - er) ** 2 + (g - eg) ** 2 + (b - eb) ** 2 + (a - ea) ** 2;
        if (d < best) {
          best = d;
          v = value;
        }
      }
      this.cache.set(key, v);
    }
    return v;
  }
}

async function pixels(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  const bitmap = await createImageBitmap(await response.blob(), { premultiplyAlpha: "none", colorSpaceConversion: "none" });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  return ctx.getImageData(0, 0, canvas.width, canvas.height);
}

function decode(image, palette) {
  const d = image.data;
  const out = new Int8Array(image.width * image.height);
  for (let i = 0, p = 0; i < out.length; i++, p += 4) out[i] = palette.value(d[p], d[p + 1], d[p + 2], d[p + 3]);
  return out;
}

async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

let palettes = null;

async function palettesOnce() {
  if (!palettes) {
    const [levels, bits] = await Promise.all([
      getJson("/api/layers/level_crowd/legend?nodata=show"), getJson("/api/layers/level_nodata/legend"),
    ]);
    const clear = { value: 0, rgba: [0, 0, 0, 0] };
    palettes = { levels: new Palette(levels.entries), bits: new Palette([clear, ...bits.entries]) };
  }
  return palettes;
}

// The held cells of a level layer as a mask PNG, opaque where held, one pixel per cell: {blob, cells}.
export async function heldMask(layer) {
  const { levels, bits } = await palettesOnce();
  const hazards = layer === "level" ? Object.keys(HAZARD_LAYERS) : [layer];
  const images = await Promise.all([
    pixels("/api/layers/level_nodata.png"), ...hazards.map((h) => pixels(`/api/layers/${h}.png?nodata=show`)),
  ]);
  const { width, height } = images[0];
  const nodata = decode(images[0], bits);
  const hazardLevels = Object.fromEntries(hazards.map((h, k) => [h, decode(images[k + 1], levels)]));
  const mask = new ImageData(width, height);
  let cells = 0;
  for (let i = 0; i < nodata.length; i++) {
    if (isHeld(layer, nodata[i], hazardLevels, i)) {
      mask.data.fill(255, 4 * i, 4 * i + 4);
      cells++;
    }
  }
  const canvas = new OffscreenCanvas(width, height);
  canvas.getContext("2d").putImageData(mask, 0, 0);
  return { blob: await canvas.convertToBlob({ type: "image/png" }), cells };
}

// The page's side: asks the worker, or does the work itself if the worker cannot start.
export class HeldCells {
  constructor() {
    this.worker = null;
    this.inline = typeof Worker === "undefined";
    this.pending = new Map(); // request id -> {resolve, reject, layer}
    this.next = 0;
  }

  startWorker() {
    this.worker = new Worker(new URL("./held-worker.js", import.meta.url), { type: "module" });
    this.worker.onmessage = ({ data }) => {
      const request = this.pending.get(data.id);
      this.pending.delete(data.id);
      if (!request) return;
      if (data.error) request.reject(new Error(data.error));
      else request.resolve({ blob: data.blob, cells: data.cells });
    };
    this.worker.onerror = (event) => {
      event.preventDefault();
      console.warn("held cells: no worker, working in the page:", event.message);
      this.inline = true;
      this.worker = null;
      for (const [id, request] of this.pending) {
        this.pending.delete(id);
        heldMask(request.layer).then(request.resolve, request.reject);
      }
    };
  }

  // The held cells of a layer: {url (an object URL of the mask PNG; the caller revokes it), cells}, or
  // null for a layer that is not a level layer.
  async mask(layer) {
    if (!HELD_LAYERS.has(layer)) return null;
    if (!this.inline && !this.worker) this.startWorker();
    const { blob, cells } = this.inline ? await heldMask(layer) : await new Promise((resolve, reject) => {
      const id = ++this.next;
      this.pending.set(id, { resolve, reject, layer });
      this.worker.postMessage({ id, layer });
    });
    return { url: URL.createObjectURL(blob), cells };
  }
}
