// The operator's dashboard: state from /ws events, drawn once per animation frame.
//
// Events (the WebSocket, or window.citytwin.handleEvent in tests) only change `state` and mark what is
// dirty; renderFrame() then redraws just that, at most once per frame, and times itself (stats).
//
// Issue 18: the city's vital signs (vitals.js) lead the page; the engineering figures sit in the System · 系统
// panel; the map has labels (labels.js), a pin per alert, a complete legend and a timeline scrubber over the
// stored level frames (scrubber.js); the list filters, sorts and has a History · 历史 tab (history.js); a new red
// rings (sound.js); a building click shows its record (building.js). Those five modules are loaded with import()
// so that the page works, without them, on a twin that does not have them yet.

import {
  acknowledge, createSilence, expireSilence, getFrame, getImageUrl, getJson, getJsonOptional, operatorName,
  setOperatorName, takeTokenFromUrl, token,
} from "./api.js";
import { CasePanel, LEDGER_EVERY_MS, dispatchDialog, stepDialog } from "./cases.js";
import { HeldCells } from "./held.js";
import { RoadLinks } from "./links.js";
import { LiveSocket, socketUrl } from "./live.js";
import { MapView } from "./map.js";
import { Overlays } from "./overlays.js";
import {
  AlertList, READ_ONLY, SilenceList, StatusStrip, clockTime, matchersText, renderLegend, renderLink, renderPoint,
  showNotice,
} from "./panels.js";
import { Projection } from "./projection.js";
import { TILE_FILTER, VITALS_EVERY_MS, VitalsPanel } from "./vitals.js";

const STATS_KEPT = 5000;
const STALE_AFTER_MS = 10000;
const SILENCES_EVERY_MS = 15000; // the silences list is read again at most this often (and after every change)
const FRAMES_EVERY_MS = 5000; // the scrubber's frame times are read again at most this often [design]
const HISTORY_EVERY_MS = 10000; // the History tab, while open, is read again at most this often [design]
const LANG_KEY = "citytwin.lang"; // the map labels' language, kept in localStorage
// H4's page modules (issue 18), loaded with import(): each is optional.
const OPTIONAL_MODULES = {
  labels: "./labels.js", scrubber: "./scrubber.js", sound: "./sound.js", history: "./history.js",
  building: "./building.js",
};
// Properties of an alert that change every tick (GET /api/alerts; issue 16), kept when an /ws alert event
// brings a feature without them.
const LIVE_KEYS = ["value", "unit", "peak", "peak_at", "trend", "trend_word", "trend_arrow", "history", "devices",
  "place", "place_name", "suppressed"];

const state = {
  alerts: new Map(), units: new Map(), status: null, onScene: new Set(), layer: "level", legendOf: null, opacity: 0.75,
  silences: [], cases: [], casesT: null, ledger: null,
  indicators: null, layerLegend: null, basemapLegend: null, replayAt: null, history: null,
  lang: readLang(),
};
const dirty = {
  alerts: false, units: new Set(), allUnits: false, status: false, view: false, links: false, cases: false,
  vitals: false, since: null,
};
const stats = {
  render: [], update: [], frames: 0, events: 0, riskRefreshes: 0, linkRefreshes: 0, valueRefreshes: 0,
  vitalsRefreshes: 0, frameRefreshes: 0, framesListed: 0, historyRefreshes: 0, reds: 0,
};
const risk = { url: null, heldUrl: null, loading: false, again: false };
const roads = { loading: false, again: false };
const values = { loading: false, again: false };
const silences = { loading: false, again: false, readAt: -Infinity, available: true };
const casesGate = { loading: false, again: false, available: true, seen: null };
const ledgerGate = { loading: false, again: false, readAt: -Infinity };
const vitalsGate = { loading: false, again: false, readAt: -Infinity, timer: null };
const framesGate = { loading: false, again: false, readAt: -Infinity, available: true };
const historyGate = { loading: false, again: false, readAt: -Infinity };
const heldCells = new HeldCells();
let mods = {}; // the optional modules that loaded: {labels, scrubber, sound, history, building}
let ui = null; // {map, overlays, alerts, status, side, legend, point, vitals, labels, scrubber, alarm}
let frameRequested = false;
let lastTickWall = null;
let snapshotSeen = false; // a snapshot after the first one is a reconnection (see ringNewRed)

// ------------------------------------------------------------------ events
function handleEvent(event) {
  stats.events++;
  switch (event.type) {
    case "snapshot": {
      const previous = snapshotSeen ? state.alerts : null;
      state.alerts = new Map(event.alerts.features.map((f) => [f.properties.identifier, f]));
      snapshotSeen = true;
      if (previous) ringNewReds(previous, state.alerts); // a reconnection: what turned red while the socket was down
      state.units = new Map(event.units.features.map((f) => [f.properties.id, unitOfFeature(f)]));
      state.status = event.status;
      invalidate("alerts");
      invalidate("allUnits");
      invalidate("status");
      refreshRisk();
      refreshValues();
      refreshCases();
      refreshLedger(true);
      refreshVitals();
      refreshFrames(true);
      break;
    }
    case "alert": {
      const p = event.feature.properties;
      const before = state.alerts.get(p.identifier);
      if (event.kind === "cancelled" || p.state === "cancelled") state.alerts.delete(p.identifier);
      else state.alerts.set(p.identifier, keepLive(event.feature, before));
      if (state.alerts.has(p.identifier)) ringNewRed(p.identifier, before);
      invalidate("alerts");
      break;
    }
    case "positions":
      for (const e of event.entities) {
        state.units.set(e.id, e);
        invalidate("units", e.id);
      }
      break;
    case "tick":
      state.status = event.status;
      lastTickWall = performance.now();
      invalidate("status");
      if (state.replayAt === null) refreshRisk(); // a replayed frame does not change with a tick
      refreshLinks();
      refreshValues();
      if (performance.now() - silences.readAt > SILENCES_EVERY_MS) refreshSilences();
      refreshCases();
      refreshLedger(false);
      if (state.legendOf !== state.layer) loadLegend();
      refreshVitals();
      refreshFrames(false);
      refreshHistory(false);
      break;
    case "case":
      refreshCases();
      refreshLedger(true);
      break;
    default:
      break; // an event this page does not know yet
  }
}

// An alert event's feature, with the live values of the one it replaces where it brings none.
function keepLive(feature, previous) {
  if (!previous) return feature;
  const p = feature.properties;
  for (const key of LIVE_KEYS) if (!(key in p) && key in previous.properties) p[key] = previous.properties[key];
  return feature;
}

// A sound and a browser notification when an alert has just become an observed red one (sound.js's newReds:
// raised red, or raised lower and now red). Not for the alerts the first snapshot brings (a reload does not ring);
// a later snapshot (the socket reconnected) rings for the reds raised while it was down.
function ringNewRed(id, before) {
  if (!mods.sound) return;
  ringNewReds(new Map(before ? [[id, before]] : []), new Map([[id, state.alerts.get(id)]]));
}

function ringNewReds(previous, next) {
  if (!mods.sound) return;
  for (const red of mods.sound.newReds(previous, next)) {
    stats.reds++;
    if (ui?.alarm) ui.alarm.ring(state.alerts.get(red));
  }
}

function unitOfFeature(f) {
  const [lon, lat] = f.geometry.coordinates;
  return { ...f.properties, lon, lat };
}

// ------------------------------------------------------------------ rendering
function invalidate(part, id) {
  if (part === "units") dirty.units.add(id);
  else dirty[part] = true;
  dirty.since ??= performance.now();
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(renderFrame);
  }
}

function renderFrame() {
  frameRequested = false;
  const t0 = performance.now();
  const { map, overlays } = ui;
  if (dirty.alerts) {
    state.onScene = new Set([...state.alerts.values()].flatMap((f) => f.properties.units_on_scene));
    overlays.renderAlerts(state.alerts);
    ui.alerts.render(state.alerts, operatorName(), Boolean(token()));
    ui.alerts.renderAges(state.status?.t);
    overlays.updateOnScene(state.onScene);
    const count = String(state.alerts.size);
    if (ui.drawerCount.textContent !== count) ui.drawerCount.textContent = count;
  }
  if (dirty.allUnits) {
    overlays.removeMissing(new Set(state.units.keys()));
    overlays.renderUnits(state.units.values(), state.onScene);
  } else if (dirty.units.size) {
    overlays.renderUnits([...dirty.units].map((id) => state.units.get(id)), state.onScene);
  }
  if (dirty.view) {
    overlays.placeAll();
    renderScale(map);
    ui.labels?.render();
  }
  if (dirty.vitals) ui.vitals.render(state.indicators);
  if (dirty.status && state.status) {
    ui.status.render(state.status);
    ui.alerts.renderAges(state.status.t);
  }
  if (dirty.cases) ui.cases.render(state.cases, state.casesT, Boolean(token()));
  if (dirty.links) {
    ui.links.render();
    const shown = ui.point.dataset.link;
    if (shown !== undefined && !ui.point.hidden) renderLink(ui.point, ui.links.props(Number(shown)), closeLink);
  }
  const t1 = performance.now();
  record(stats.render, t1 - t0);
  record(stats.update, t1 - dirty.since);
  stats.frames++;
  Object.assign(dirty, { alerts: false, allUnits: false, status: false, view: false, links: false, cases: false,
    vitals: false, since: null });
  dirty.units.clear();
}

function record(list, value) {
  list.push(value);
  if (list.length > STATS_KEPT) list.shift();
}

function renderScale(map) {
  const { metres, px } = map.scaleBar();
  document.getElementById("scale-bar").style.width = `${px.toFixed(0)}px`;
  document.getElementById("scale-text").textContent = metres >= 1000 ? `${metres / 1000} km` : `${metres} m`;
}

// Run `body` one call at a time: a call while one runs asks for one more run after it (so the newest state is
// always what is shown), and a failure is logged under `label` and does not stop the next call.
async function oneAtATime(gate, label, body) {
  if (gate.loading) {
    gate.again = true;
    return;
  }
  gate.loading = true;
  try {
    do {
      gate.again = false;
      await body();
    } while (gate.again);
  } catch (err) {
    console.warn(`${label}:`, err.message);
  } finally {
    gate.loading = false;
  }
}

// The risk layer PNG, fetched again after each tick: one request at a time, and the picture is swapped
// only once decoded, so it never flickers. With a level layer comes the mask of its held cells (held.js),
// swapped together with it.
function refreshRisk() {
  if (!ui) return;
  return oneAtATime(risk, "risk layer", async () => {
    const layer = state.layer;
    if (!layer) {
      ui.map.setRisk(null, state.opacity);
      setHeld(null);
      return;
    }
    if (state.replayAt !== null) return showFrame(layer, state.replayAt);
    const heldMask = heldCells.mask(layer).catch((err) => {
      console.warn("held cells:", err.message);
      return null;
    });
    const url = await getImageUrl(`/api/layers/${layer}.png`).catch(async (err) => {
      const held = await heldMask;
      if (held) URL.revokeObjectURL(held.url);
      throw err;
    });
    const held = await heldMask;
    await Promise.all([url, held?.url].filter(Boolean).map(preloadImage));
    if (layer !== state.layer) {
      URL.revokeObjectURL(url);
      if (held) URL.revokeObjectURL(held.url);
      risk.again = true;
      return;
    }
    if (state.replayAt !== null) { // the scrubber moved meanwhile: the frame instead
      URL.revokeObjectURL(url);
      if (held) URL.revokeObjectURL(held.url);
      risk.again = true;
      return;
    }
    ui.map.setRisk(url, state.opacity);
    setHeld(held);
    if (risk.url) URL.revokeObjectURL(risk.url);
    risk.url = url;
    stats.riskRefreshes++;
    const image = document.getElementById("risk");
    image.dataset.layer = layer;
    delete image.dataset.frame;
  });
}

// The stored frame of `layer` at or before twin time `at` (the scrubber), drawn as the live layer is (no held
// cells: the frames store levels only). Called inside the risk layer's one-at-a-time gate.
async function showFrame(layer, at) {
  const frame = await getFrame(layer, at);
  if (frame) await preloadImage(frame.url);
  if (layer !== state.layer || at !== state.replayAt) {
    if (frame) URL.revokeObjectURL(frame.url);
    risk.again = true;
    return;
  }
  ui.map.setRisk(frame ? frame.url : null, state.opacity);
  setHeld(null);
  if (risk.url) URL.revokeObjectURL(risk.url);
  risk.url = frame ? frame.url : null;
  stats.frameRefreshes++;
  const image = document.getElementById("risk");
  image.dataset.layer = layer;
  image.dataset.frame = frame ? String(frame.t) : "none";
  renderReplayBadge(frame ? frame.t : at, Boolean(frame));
}

function renderReplayBadge(t, found) {
  const badge = document.getElementById("replay-badge");
  badge.hidden = state.replayAt === null;
  document.body.classList.toggle("replaying", state.replayAt !== null);
  if (state.replayAt === null) return;
  badge.textContent = `Replay · 回放 ${clockTime(t).slice(0, 5)}` + (found ? "" : " · no frame · 无数据");
  badge.title = `the risk layer as stored at ${clockTime(t)}; "Live · 实时" returns to the live twin`;
  badge.dataset.t = String(t);
}

// The scrubber moved (t: twin time) or went back to live (null).
function onScrub(t) {
  state.replayAt = t == null ? null : Number(t);
  renderReplayBadge(state.replayAt, true);
  refreshRisk();
  refreshVitals(true);
}

// The road links' speeds, fetched again after each tick (one request at a time, like the risk layer); the
// links' geometry came once, at start (links.js).
function refreshLinks() {
  if (!ui || !ui.links.available) return;
  return oneAtATime(roads, "road links", async () => {
    if (await ui.links.refresh()) {
      stats.linkRefreshes++;
      invalidate("links");
    }
  });
}

// The alerts' values, trends, histories and suppression change every tick without an alert event: read them
// from GET /api/alerts after each tick (one request at a time) into the alerts the page has; the /ws events
// alone decide which alerts there are.
function refreshValues() {
  if (!ui) return;
  return oneAtATime(values, "alert values", async () => {
    const fc = await getJson("/api/alerts?state=active");
    let changed = false;
    for (const f of fc.features) {
      const known = state.alerts.get(f.properties.identifier);
      if (!known) continue;
      for (const key of LIVE_KEYS) {
        if (!(key in f.properties)) continue;
        if (JSON.stringify(known.properties[key]) !== JSON.stringify(f.properties[key])) {
          known.properties[key] = f.properties[key];
          changed = true;
        }
      }
    }
    stats.valueRefreshes++;
    if (changed) invalidate("alerts");
  });
}

// The active silences, for the list under the alerts; a twin without silences (503, 404) shows none.
function refreshSilences() {
  if (!ui || !silences.available) return;
  silences.readAt = performance.now();
  return oneAtATime(silences, "silences", async () => {
    const response = await fetch("/api/silences?state=active", { headers: { Accept: "application/json" } });
    if (response.status === 404 || response.status === 503) {
      silences.available = false;
      ui.silences.hide();
      return;
    }
    if (!response.ok) throw new Error(`/api/silences: HTTP ${response.status}`);
    const body = await response.json();
    state.silences = Array.isArray(body) ? body : body.silences || [];
    ui.silences.render(state.silences, Boolean(token()));
  });
}

// The open cases (GET /api/cases?open=true), after every tick and case event, one request at a time; a twin
// without cases (404, 503) shows no panel.
function refreshCases() {
  if (!ui || !casesGate.available) return;
  return oneAtATime(casesGate, "cases", async () => {
    const response = await fetch("/api/cases?open=true", { headers: { Accept: "application/json" } });
    if (response.status === 404 || response.status === 503) {
      casesGate.available = false;
      ui.cases.hide();
      return;
    }
    if (!response.ok) throw new Error(`/api/cases: HTTP ${response.status}`);
    const body = await response.json();
    const seen = JSON.stringify(body.cases) + (body.cases.length ? body.t : ""); // the deadlines count down
    if (seen === casesGate.seen) return;
    casesGate.seen = seen;
    state.cases = body.cases;
    state.casesT = body.t;
    invalidate("cases");
  });
}

// The vital-signs tiles of the chosen node (GET /api/indicators; at the scrubber's time when replaying): after
// every tick, at most once every VITALS_EVERY_MS (a later call waits for the rest of the second), one request at a
// time. A twin without indicators (404) leaves the tiles without data.
function refreshVitals(now = false) {
  if (!ui) return;
  const wait = vitalsGate.readAt + VITALS_EVERY_MS - performance.now();
  if (!now && wait > 0) {
    vitalsGate.timer ??= setTimeout(() => {
      vitalsGate.timer = null;
      refreshVitals();
    }, wait);
    return;
  }
  vitalsGate.readAt = performance.now();
  return oneAtATime(vitalsGate, "vital signs", async () => {
    const { level, parent } = ui.vitals.query();
    const query = new URLSearchParams({ level });
    if (parent) query.set("parent", parent);
    if (state.replayAt !== null) query.set("at", String(state.replayAt));
    state.indicators = await getJsonOptional(`/api/indicators?${query}`);
    stats.vitalsRefreshes++;
    invalidate("vitals");
  });
}

// The times of the stored level frames, for the scrubber (GET /api/frames): after a tick at most every
// FRAMES_EVERY_MS (now: at once). A twin without frames (404) has no scrubber.
function refreshFrames(now) {
  if (!ui?.scrubber || !framesGate.available) return;
  if (!now && performance.now() - framesGate.readAt < FRAMES_EVERY_MS) return;
  framesGate.readAt = performance.now();
  return oneAtATime(framesGate, "frames", async () => {
    const body = await getJsonOptional("/api/frames");
    const root = document.getElementById("scrubber");
    if (!body) {
      framesGate.available = false;
      root.hidden = true;
      refit();
      return;
    }
    ui.scrubber.setTimes(body.times || []);
    root.dataset.frames = String((body.times || []).length);
    stats.framesListed++;
  });
}

// The History · 历史 tab (GET /api/alerts/history, the last 3 hours): when opened (now), then after ticks at most
// every HISTORY_EVERY_MS while it is open.
function refreshHistory(now) {
  if (!ui || !ui.historyOpen) return;
  if (!now && performance.now() - historyGate.readAt < HISTORY_EVERY_MS) return;
  historyGate.readAt = performance.now();
  return oneAtATime(historyGate, "alert history", async () => {
    state.history = await getJsonOptional("/api/alerts/history");
    stats.historyRefreshes++;
    renderHistoryPane();
  });
}

function renderHistoryPane() {
  const box = document.getElementById("history");
  if (!state.history) {
    box.textContent = "No alert history on this twin · 无历史记录";
    return;
  }
  box.dataset.count = String(state.history.alerts.length);
  if (mods.history) {
    mods.history.renderHistory(box, state.history, { lang: state.lang, onSelect: (id) => selectAlert(id, true) });
  } else {
    box.replaceChildren(...state.history.alerts.map((a) => {
      const li = document.createElement("div");
      li.className = `history-row level-${a.level}`;
      li.textContent = `${clockTime(a.raised_at)} ${a.hazard} ${a.place_name || a.areaDesc || a.identifier} · ${a.state}`;
      return li;
    }));
  }
}

function showTab(history) {
  ui.historyOpen = history;
  document.getElementById("tab-active").setAttribute("aria-selected", String(!history));
  document.getElementById("tab-history").setAttribute("aria-selected", String(history));
  document.getElementById("active-pane").hidden = history;
  document.getElementById("history-pane").hidden = !history;
  if (history) refreshHistory(true);
}

// Today's ledger line: after case events (now), else at most every LEDGER_EVERY_MS.
function refreshLedger(now) {
  if (!ui || !casesGate.available || (!now && performance.now() - ledgerGate.readAt < LEDGER_EVERY_MS)) return;
  ledgerGate.readAt = performance.now();
  return oneAtATime(ledgerGate, "ledger", async () => {
    state.ledger = await getJson("/api/ledger");
    ui.cases.renderLedger(state.ledger);
  });
}

async function onCaseDispatch(id) {
  const c = await dispatchDialog(state.cases.find((x) => x.id === id) || { id }, ui.side);
  if (!c) return invalidate("cases");
  showNotice(ui.side, `${c.id} dispatched to ${c.assignee} · 已派遣`, "ok");
  setTimeout(() => showNotice(ui.side, ""), 5000);
  renderOperatorLine();
  refreshCases();
  refreshLedger(true);
}

async function onCaseStep(id, kind) {
  const c = await stepDialog(state.cases.find((x) => x.id === id) || { id }, kind, ui.side);
  if (!c) return invalidate("cases");
  showNotice(ui.side, `${c.id}: ${c.status} · 已更新`, "ok");
  setTimeout(() => showNotice(ui.side, ""), 5000);
  renderOperatorLine();
  refreshCases();
  refreshLedger(true);
}

async function loadLinks() {
  if (!(await ui.links.load())) return;
  document.getElementById("links-toggle").hidden = false;
  invalidate("links");
}

function setHeld(held) {
  ui.map.setHeld(held ? held.url : null, held ? held.cells : 0);
  if (risk.heldUrl) URL.revokeObjectURL(risk.heldUrl);
  risk.heldUrl = held ? held.url : null;
}

async function setLayer(name) {
  state.layer = name;
  refreshRisk();
  await loadLegend();
}

// The legend of the risk layer; before the twin's first tick there is no risk layer yet, so a tick
// tries again until it is there.
async function loadLegend() {
  const name = state.layer;
  const legend = name ? await getJson(`/api/layers/${name}/legend`).catch(() => null) : null;
  if (name !== state.layer) return;
  state.legendOf = legend || !name ? name : null;
  state.layerLegend = legend;
  drawLegend();
}

function drawLegend() {
  renderLegend(ui.legend, state.layerLegend, { basemap: state.basemapLegend, links: ui.links.available });
  refit();
}

// Fit the district again when the panels over the map changed, unless the operator has moved the view.
function refit() {
  if (ui?.map.autoFit) ui.map.fit();
}

// The insets of the map's free part (MapView.fit): beside the panels on the left and right ("side"), or between
// those at the top and at the bottom ("stacked"); a pin rises PIN_PX above its tip, so the top keeps that room.
const PIN_PX = 34;
const INSET_MARGIN_PX = 8;

function panelInsets(w, h) {
  const pane = document.getElementById("map-pane").getBoundingClientRect();
  const box = (id) => {
    const r = document.getElementById(id).getBoundingClientRect();
    if (!r.width || !r.height) return null; // hidden
    return { l: r.left - pane.left, t: r.top - pane.top, r: r.right - pane.left, b: r.bottom - pane.top };
  };
  const [layers, legend, buttons, scrubber, scale, credit] =
    ["layer-panel", "legend", "map-buttons", "scrubber", "scale", "credit"].map(box);
  const m = INSET_MARGIN_PX;
  const lowest = (boxes) => Math.min(h, ...boxes.filter(Boolean).map((b) => b.t));
  const bottomTop = lowest([scrubber, scale, credit]);
  const side = {
    left: Math.max(0, ...[layers, legend].filter(Boolean).map((b) => b.r)) + m,
    right: w - Math.min(w, ...[buttons].filter(Boolean).map((b) => b.l)) + m,
    top: PIN_PX, bottom: h - bottomTop + m,
  };
  const stacked = {
    left: m, right: m, top: Math.max(0, ...[layers, buttons].filter(Boolean).map((b) => b.b)) + PIN_PX,
    bottom: h - Math.min(bottomTop, lowest([legend])) + m,
  };
  return [side, stacked];
}

// The risk layer shown by the radio buttons (the tiles set it too).
function chooseLayer(name) {
  const input = document.querySelector(`input[name="layer"][value="${name}"]`);
  if (input && !input.checked) input.checked = true;
  if (name !== state.layer) setLayer(name);
}

// A vital-signs tile clicked: people, water, traffic show their hazard's risk layer and only its alerts; another
// click (or a tile without a hazard) goes back to the overall layer and every alert.
function onTileFilter(name) {
  const filter = TILE_FILTER[name] || null;
  ui.vitals.setFilter(filter ? name : null);
  document.getElementById("filter-hazard").value = filter ? filter.hazard : "";
  ui.alerts.setFilter({ hazard: filter ? filter.hazard : "" });
  chooseLayer(filter ? filter.layer : "level");
  invalidate("alerts");
}

// A tile that filters nothing: the alerts tile shows the alert list (the drawer on a phone), the cases tile the
// cases; any of them ends a tile filter.
function onTile(name) {
  if (ui.vitals.filter) onTileFilter(null);
  if (name === "alerts") {
    showTab(false);
    if (window.matchMedia(NARROW).matches) drawer(true);
  } else if (name === "cases") {
    const cases = document.getElementById("cases");
    if (cases.hidden) return;
    cases.open = true;
    if (window.matchMedia(NARROW).matches) drawer(true);
    cases.scrollIntoView({ block: "nearest" });
  }
}

// The drill-down chose a node: outline it (not the city: that is the whole map) and read its tiles now.
function onNode(id, feature) {
  ui.overlays.setOutline(id !== "city" && feature ? feature.geometry : null);
  document.getElementById("drill-outline").dataset.node = id;
  refreshVitals(true);
}

// ------------------------------------------------------------------ interaction
function selectAlert(id, pan) {
  ui.overlays.select(id);
  ui.alerts.select(id);
  const entry = ui.overlays.areas.get(id);
  if (pan && entry?.centre) ui.map.centreOn(...entry.centre);
}

function closeLink() {
  ui.point.hidden = true;
  delete ui.point.dataset.link;
  ui.links.select(null);
}

async function onMapClick(px, py, target) {
  const hit = target.closest?.("[data-id]");
  if (hit && ui.overlays.areas.has(hit.dataset.id)) {
    selectAlert(hit.dataset.id, false);
    if (window.matchMedia(NARROW).matches) drawer(true); // on a phone: its card, in the drawer
  }
  const link = hit ? null : ui.links.hit(px, py);
  ui.links.select(link ? link.link_id : null);
  if (link) {
    ui.overlays.setPin(null);
    ui.point.dataset.link = String(link.link_id);
    renderLink(ui.point, link, closeLink);
    return;
  }
  delete ui.point.dataset.link;
  const [lon, lat] = ui.map.lonLatOfScreen(px, py);
  const v = ui.map.view;
  ui.overlays.setPin([(px - v.tx) / v.k, (py - v.ty) / v.k]);
  const building = hit ? null : ui.map.buildingAt(px, py);
  ui.overlays.setBuilding(building ? building.rings : null);
  const closePoint = () => {
    ui.point.hidden = true;
    ui.overlays.setPin(null);
    ui.overlays.setBuilding(null);
    delete ui.point.dataset.building;
  };
  const record = building ? buildingRecord(building) : null;
  let point;
  try {
    point = await getJson(`/api/point?lon=${lon.toFixed(7)}&lat=${lat.toFixed(7)}`);
  } catch (err) {
    const outside = err.message.endsWith("HTTP 404");
    point = { error: outside ? "Outside the twin's grid." : `No values: ${err.message}` };
  }
  const shown = await record;
  if (building) {
    ui.point.dataset.building = building.id;
    renderPoint(ui.point, point, closePoint, (box) => drawBuilding(box, shown));
  } else {
    delete ui.point.dataset.building;
    renderPoint(ui.point, point, closePoint);
  }
}

// The building's record (GET /api/buildings/{id}); its footprint's properties when the twin has no such route.
async function buildingRecord(building) {
  try {
    const record = await getJsonOptional(`/api/buildings/${encodeURIComponent(building.id)}`);
    if (record) return record;
  } catch (err) {
    console.warn("building:", err.message);
  }
  const p = building.props;
  return { id: building.id, name: p.name, use: p.use, floors: p.floors, height_m: p.height, footprintOnly: true };
}

function drawBuilding(box, record) {
  if (mods.building && !record.footprintOnly) {
    mods.building.renderBuilding(box, record);
    return;
  }
  const rows = [["name · 名称", record.name || "–"], ["use · 用途", record.use || "–"],
    ["floors · 层数", record.floors ?? "–"], ["height · 高度", record.height_m != null ? `${record.height_m} m` : "–"]];
  const table = document.createElement("table");
  table.className = "point-values";
  for (const [k, value] of rows) {
    const tr = table.insertRow();
    const th = document.createElement("th");
    th.textContent = k;
    tr.append(th);
    tr.insertCell().textContent = String(value);
  }
  box.replaceChildren(table);
}

async function onAckClicked(id) {
  if (!token()) {
    showNotice(ui.side, (await acknowledge(id, "", "")).message);
    return;
  }
  let name = operatorName();
  let note = "";
  if (!name) {
    const answer = await askOperator(id);
    if (!answer) return;
    ({ name, note } = answer);
    setOperatorName(name);
    renderOperatorLine();
  }
  const result = await acknowledge(id, name, note);
  if (!result.ok) {
    showNotice(ui.side, result.message);
    renderOperatorLine();
    return;
  }
  showNotice(ui.side, `Alert acknowledged as ${name}.`, "ok");
  setTimeout(() => showNotice(ui.side, ""), 4000);
  const feature = state.alerts.get(id); // shown now; the /ws "acknowledged" event confirms it
  if (feature && !feature.properties.acknowledged_by.includes(name)) {
    feature.properties.acknowledged_by = [...feature.properties.acknowledged_by, name];
    invalidate("alerts");
  }
}

// The operator's name, asked for once per browser tab (kept in sessionStorage).
function askOperator(id) {
  const dialog = document.getElementById("operator-dialog");
  const feature = state.alerts.get(id);
  document.getElementById("operator-alert").textContent = feature
    ? `${feature.properties.level_name.toUpperCase()} ${feature.properties.hazard}: ${feature.properties.area_desc || id}`
    : id;
  document.getElementById("operator-name").value = "";
  document.getElementById("operator-note").value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const name = document.getElementById("operator-name").value.trim();
      const note = document.getElementById("operator-note").value.trim();
      resolve(dialog.returnValue === "ok" && name ? { name, note } : null);
    }, { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

// ------------------------------------------------------------------ silences
// The matchers a silence of this alert offers (docs/guides/operator.md): its hazard and its place (the place's
// key, from the twin's live state), or the alert itself when the page does not know its place.
function silenceMatchers(p) {
  const out = [{ label: "hazard", op: "=", value: p.hazard, text: `hazard = ${p.hazard}` }];
  if (p.place) {
    const name = p.place_name && p.place_name !== p.place ? ` (${p.place_name})` : "";
    out.push({ label: "place", op: "=", value: p.place, text: `place = ${p.place}${name}` });
  } else {
    out.push({ label: "identifier", op: "=", value: p.identifier, text: `this alert only: ${p.identifier}` });
  }
  return out;
}

function fillSilenceForm(p) {
  document.getElementById("silence-alert").textContent =
    `${p.level_name.toUpperCase()} ${p.hazard}: ${p.headline || p.area_desc || p.identifier}`;
  const box = document.getElementById("silence-matchers");
  box.querySelectorAll("label").forEach((l) => l.remove());
  for (const m of silenceMatchers(p)) {
    const label = document.createElement("label");
    label.className = "check";
    const input = document.createElement("input");
    input.type = "checkbox";
    input.checked = true;
    Object.assign(input.dataset, { label: m.label, op: m.op, value: m.value });
    label.append(input, ` ${m.text}`);
    box.append(label);
  }
  document.getElementById("silence-duration").value = "1800";
  document.getElementById("silence-by").value = operatorName() || "";
  document.getElementById("silence-why").value = "";
  showProblem("silence-problem", "");
}

function showProblem(id, text) {
  const p = document.getElementById(id);
  p.textContent = text;
  p.hidden = !text;
}

// The body of POST /api/silences from the form (null when no matcher is ticked).
function silenceRequest() {
  const matchers = [...document.querySelectorAll("#silence-matchers input:checked")].map((i) => ({
    label: i.dataset.label, op: i.dataset.op, value: i.dataset.value,
  }));
  if (!matchers.length) return null;
  return {
    matchers, starts_at: null, duration_s: Number(document.getElementById("silence-duration").value),
    created_by: document.getElementById("silence-by").value.trim(),
    comment: document.getElementById("silence-why").value.trim(),
  };
}

async function onSilenceClicked(id) {
  const feature = state.alerts.get(id);
  if (!feature) return;
  if (!token()) {
    showNotice(ui.side, "No API token: open the dashboard from the link with #token=… to silence alerts.");
    return;
  }
  fillSilenceForm(feature.properties);
  const dialog = document.getElementById("silence-dialog");
  dialog.returnValue = "";
  dialog.showModal();
}

async function submitSilence(e) {
  e.preventDefault();
  const dialog = document.getElementById("silence-dialog");
  if (e.submitter?.value === "cancel") {
    dialog.close("cancel");
    return;
  }
  const body = silenceRequest();
  if (!body) {
    showProblem("silence-problem", "Tick at least one matcher: a silence of everything is not allowed here.");
    return;
  }
  const ok = document.getElementById("silence-ok");
  ok.disabled = true;
  const result = await createSilence(body);
  ok.disabled = false;
  if (!result.ok) {
    showProblem("silence-problem", result.message);
    return;
  }
  dialog.close("ok");
  if (!operatorName()) {
    setOperatorName(body.created_by);
    renderOperatorLine();
  }
  const until = result.body.ends_at != null ? ` until ${clockTime(result.body.ends_at)}` : "";
  showNotice(ui.side, `Silenced${until} · 已静默 (${matchersText(body.matchers)}).`, "ok");
  setTimeout(() => showNotice(ui.side, ""), 6000);
  refreshSilences();
}

async function onExpireClicked(id) {
  const silence = state.silences.find((s) => s.id === id);
  document.getElementById("expire-silence").textContent = silence ? matchersText(silence.matchers) : id;
  document.getElementById("expire-by").value = operatorName() || "";
  document.getElementById("expire-why").value = "";
  const dialog = document.getElementById("expire-dialog");
  dialog.returnValue = "";
  const answer = await new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
  if (!answer) return;
  const by = document.getElementById("expire-by").value.trim();
  const why = document.getElementById("expire-why").value.trim();
  const result = await expireSilence(id, by, why);
  showNotice(ui.side, result.ok ? "Silence expired · 静默已解除." : result.message, result.ok ? "ok" : "error");
  refreshSilences();
}

function renderOperatorLine() {
  const line = document.getElementById("operator-line");
  line.replaceChildren();
  document.body.classList.toggle("read-only", !token());
  if (!token()) {
    line.textContent = READ_ONLY;
    line.classList.add("read-only-line");
    return;
  }
  line.classList.remove("read-only-line");
  const name = operatorName();
  line.append(name ? `Operator: ${name} ` : "Operator: asked at the first acknowledgement");
  if (name) {
    const change = document.createElement("button");
    change.className = "link-button";
    change.textContent = "change";
    change.addEventListener("click", () => {
      setOperatorName(null);
      renderOperatorLine();
      invalidate("alerts");
    });
    line.append(change);
  }
}

function setupControls(map) {
  document.getElementById("zoom-in").addEventListener("click", () => map.zoomCentre(1.6));
  document.getElementById("zoom-out").addEventListener("click", () => map.zoomCentre(1 / 1.6));
  document.getElementById("zoom-fit").addEventListener("click", () => map.fit());
  for (const input of document.querySelectorAll('input[name="layer"]')) {
    input.addEventListener("change", () => input.checked && setLayer(input.value));
  }
  document.getElementById("risk-opacity").addEventListener("input", (e) => {
    state.opacity = e.target.value / 100;
    document.getElementById("risk").style.opacity = state.opacity;
    document.getElementById("held").style.opacity = state.opacity;
  });
  document.getElementById("show-vehicles").addEventListener("change", (e) => {
    document.getElementById("vehicle-markers").style.display = e.target.checked ? "" : "none";
  });
  document.getElementById("show-links").addEventListener("change", (e) => {
    ui.links.setVisible(e.target.checked);
    if (!e.target.checked && ui.point.dataset.link !== undefined) closeLink();
  });
  document.getElementById("legend-toggle").addEventListener("click", () => {
    document.body.classList.toggle("legend-flip");
    refit();
  });
  // the alert list's filter row
  const filters = () => {
    const hazard = document.getElementById("filter-hazard").value;
    ui.alerts.setFilter({
      hazard, level: Number(document.getElementById("filter-level").value),
      place: document.getElementById("filter-place").value, sort: document.getElementById("sort-alerts").value,
    });
    const tile = Object.keys(TILE_FILTER).find((name) => TILE_FILTER[name].hazard === hazard) || null;
    ui.vitals.setFilter(tile);
    invalidate("alerts");
  };
  for (const id of ["filter-hazard", "filter-level", "sort-alerts"]) {
    document.getElementById(id).addEventListener("change", filters);
  }
  document.getElementById("filter-place").addEventListener("input", filters);
  document.getElementById("tab-active").addEventListener("click", () => showTab(false));
  document.getElementById("tab-history").addEventListener("click", () => showTab(true));
  // the drawer of a narrow screen: the alert list over the map
  document.getElementById("drawer-toggle").addEventListener("click",
    () => drawer(!document.body.classList.contains("drawer-open")));
  document.getElementById("drawer-close").addEventListener("click", () => drawer(false));
  const lang = document.getElementById("lang-toggle");
  const showLang = () => {
    lang.textContent = state.lang === "zh" ? "中文" : "EN";
    lang.dataset.lang = state.lang;
  };
  showLang();
  lang.addEventListener("click", () => {
    state.lang = state.lang === "zh" ? "en" : "zh";
    try {
      localStorage.setItem(LANG_KEY, state.lang);
    } catch {
      // storage refused (private mode): the choice lasts for this page
    }
    showLang();
    ui.labels?.setLanguage(state.lang);
    ui.labels?.render();
    if (ui.historyOpen && state.history) renderHistoryPane();
  });
  setupMute();
}

// The drawer of a narrow screen (the alert list over the map): open or closed.
const NARROW = "(max-width: 760px)"; // style.css's narrow screens
function drawer(open) {
  document.body.classList.toggle("drawer-open", open);
  document.getElementById("drawer-toggle").setAttribute("aria-expanded", String(open));
}

// The sound and notification of a new red (sound.js): the button says whether they are on, and is kept muted or
// not in localStorage (by the Alarm). Turning the sound on asks for the browser's permission to notify.
function setupMute() {
  const button = document.getElementById("mute-toggle");
  if (!ui.alarm) {
    button.hidden = true;
    return;
  }
  const show = () => {
    const muted = ui.alarm.muted;
    button.setAttribute("aria-pressed", String(muted));
    button.classList.toggle("muted", muted);
    button.querySelector(".tool-text").textContent = muted ? "Muted · 静音" : "Sound · 声音";
  };
  show();
  button.addEventListener("click", () => {
    ui.alarm.setMuted(!ui.alarm.muted);
    if (!ui.alarm.muted) ui.alarm.askPermission().catch((err) => console.warn("notifications:", err.message));
    show();
  });
}

function readLang() {
  try {
    return localStorage.getItem(LANG_KEY) === "en" ? "en" : "zh";
  } catch {
    return "zh";
  }
}

// The optional page modules that load (a missing one is logged and left out).
async function loadModules() {
  const entries = await Promise.all(Object.entries(OPTIONAL_MODULES).map(async ([key, path]) => {
    try {
      return [key, await import(path)];
    } catch (err) {
      console.warn(`${path}:`, err.message);
      return [key, null];
    }
  }));
  return Object.fromEntries(entries.filter(([, mod]) => mod));
}

// The map's road and place names (GET /api/basemap/labels) in the chosen language.
async function loadLabels() {
  if (!ui.labels) return;
  const body = await getJsonOptional("/api/basemap/labels");
  if (!body) return;
  ui.labels.load(body);
  ui.labels.setLanguage(state.lang);
  document.getElementById("labels").dataset.count = String(body.labels.length);
  invalidate("view");
}

// The management tree for the drill-down (GET /api/admin-units); without it the tiles show the city only.
async function loadTree() {
  const tree = await getJsonOptional("/api/admin-units");
  if (tree) ui.vitals.setTree(tree);
}

// "no ticks" when the twin has gone quiet although the socket is open.
function watchTicks(strip) {
  setInterval(() => {
    const link = document.body.dataset.ws;
    if (lastTickWall !== null && (link === "live" || link === "stale")) {
      const quiet = performance.now() - lastTickWall > STALE_AFTER_MS;
      if (quiet !== (link === "stale")) strip.setLink(quiet ? "stale" : "live");
    }
  }, 1000);
}

// ------------------------------------------------------------------ start
// Load a picture into the browser's cache (the base map is rendered on its first request).
function preloadImage(url) {
  const image = new Image();
  image.src = url;
  return image.decode();
}

async function main() {
  takeTokenFromUrl();
  const [grid, fit, buildings, modules] = await Promise.all([
    getJson("/api/grid"), getJson("/api/basemap/projection"), getJson("/api/basemap/buildings"), loadModules(),
  ]);
  mods = modules;
  const basemapUrl = buildings.features.length ? "/api/basemap.png" : "/api/basemap.png?buildings=true";
  await preloadImage(basemapUrl).catch((err) => console.warn("base map:", err.message));
  document.getElementById("district").textContent = grid.district ? `${grid.district} · live twin` : "live twin";
  document.getElementById("credit").textContent = grid.credit || "";
  const svg = document.getElementById("map");
  const base = document.getElementById("base");
  const map = new MapView(svg, base, grid, new Projection(fit), () => ui && invalidate("view"), (...a) => onMapClick(...a));
  const side = document.getElementById("side");
  ui = {
    map, side, overlays: new Overlays(map, svg),
    alerts: new AlertList(side, onAckClicked, (id) => selectAlert(id, true), onSilenceClicked),
    silences: new SilenceList(document.getElementById("silences"), onExpireClicked),
    cases: new CasePanel(document.getElementById("cases"), onCaseDispatch, onCaseStep),
    status: new StatusStrip(document.getElementById("topbar")), legend: document.getElementById("legend"),
    point: document.getElementById("point-info"), links: new RoadLinks(map, document.getElementById("links")),
    vitals: new VitalsPanel(document.getElementById("vitals"), { onFilter: onTileFilter, onTile, onNode }),
    labels: mods.labels ? new mods.labels.MapLabels(document.getElementById("labels"), map) : null,
    scrubber: mods.scrubber ? new mods.scrubber.Scrubber(document.getElementById("scrubber"), { onChange: onScrub }) : null,
    alarm: mods.sound ? new mods.sound.Alarm() : null,
    drawerCount: document.getElementById("drawer-count"), historyOpen: false,
  };
  if (!ui.scrubber) document.getElementById("scrubber").hidden = true;
  map.setBasemap(basemapUrl);
  map.setBuildings(buildings);
  map.insets = panelInsets;
  map.fit();
  setupControls(map);
  renderOperatorLine();
  document.getElementById("silence-form").addEventListener("submit", submitSilence);
  refreshSilences();
  refreshCases();
  refreshLedger(true);
  ui.cases.loadNames().then(() => invalidate("cases")).catch((err) => console.warn("case categories:", err.message));
  await setLayer(state.layer);
  const linksLoaded = loadLinks().then(drawLegend).catch((err) => console.warn("road links:", err.message));
  getJsonOptional("/api/basemap/legend").then((body) => {
    state.basemapLegend = body?.items || null;
    drawLegend();
  }).catch((err) => console.warn("base map legend:", err.message));
  const labelsLoaded = loadLabels().catch((err) => console.warn("labels:", err.message));
  const treeLoaded = loadTree().catch((err) => console.warn("admin units:", err.message));
  refreshVitals(true);
  refreshFrames(true);
  const socket = new LiveSocket(socketUrl(), handleEvent, (s, d) => ui.status.setLink(s, d));
  socket.connect();
  watchTicks(ui.status);
  // For tests and the curious: feed events through the same path as the WebSocket, read the timings.
  window.citytwin = {
    handleEvent,
    stats: () => ({ ...stats, render: [...stats.render], update: [...stats.update] }),
    resetStats: () => Object.assign(stats, { render: [], update: [], frames: 0, events: 0 }),
    counts: () => ({ alerts: state.alerts.size, units: state.units.size }),
    refreshSilences,
    refreshCases,
    cases: () => state.cases.map((c) => ({ id: c.id, status: c.status, assignee: c.assignee, overdue: c.overdue })),
    // the road links: whether the twin has them, the tick of the speeds drawn, how many links have a speed
    links: async () => {
      await linksLoaded;
      return { available: ui.links.available, t: ui.links.t, withSpeed: Number(ui.links.group.dataset.withSpeed || 0) };
    },
    grid,
    toLonLat: (x, y) => map.projection.toLonLat(x, y),
    toXY: (lon, lat) => map.projection.toXY(lon, lat),
    zoom: (factor) => map.zoomCentre(factor),
    // centre the map on lon, lat at k pixels per metre; where a lon, lat is on the page (CSS pixels)
    lookAt: (lon, lat, k) => {
      const { w, h } = map.viewport();
      const [lx, ly] = map.localOfLonLat(lon, lat);
      map.setView(k, w / 2 - lx * k, h / 2 - ly * k);
    },
    pageXY: (lon, lat) => {
      const r = svg.getBoundingClientRect();
      const [px, py] = map.screenOfLocal(...map.localOfLonLat(lon, lat));
      return [r.left + px, r.top + py];
    },
    fit: () => map.fit(),
    modules: () => Object.keys(mods),
  };
  // ready once the map has its labels and the drill-down its tree (the tests' figures start from a drawn page)
  await Promise.all([labelsLoaded, treeLoaded]);
  document.body.dataset.ready = "true";
}

main().catch((err) => {
  console.error(err);
  showNotice(document.getElementById("side"), `The dashboard could not start: ${err.message}. Reload the page.`);
});
