// A field unit's page (/unit#unit=<id>&token=<token>): its tasks, its alerts, a map with its position and the
// target, a button per next step and a note. Mobile first (390 px wide); every label in Chinese and English.
//
// The page reads GET /api/units/{unit}/tasks every POLL_MS (polling, not /ws: one small request that works the same
// through any proxy and after a phone wakes up) and at once after each answer it sends. Answers go to
// POST /api/units/{unit}/tasks/{case}/status with the unit's token, which comes in the address's fragment (never
// sent to a server), is kept in this tab's sessionStorage and removed from the address bar.

import { Projection } from "./projection.js";
import { el } from "./dom.js";

const POLL_MS = 5000;
const TOKEN_KEY = (unit) => `citytwin.unitToken.${unit}`;
const SHANGHAI = "Asia/Shanghai";
const clockFormat = new Intl.DateTimeFormat("en-GB", {
  timeZone: SHANGHAI, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});
const clock = (t) => (t == null ? "–" : clockFormat.format(new Date(t * 1000)));

// What people read, [Chinese, English].
const STEP = {
  accepted: ["接受", "Accept"], en_route: ["出发", "En route"], on_scene: ["到场", "On scene"],
  disposed: ["处置完毕", "Disposed"], declined: ["拒绝", "Decline"],
};
// The unit's next steps from a case's status (twin/cases/model.py TRANSITIONS), the usual one first.
const NEXT = {
  dispatched: ["accepted", "declined"], accepted: ["en_route", "on_scene", "declined"], en_route: ["on_scene"],
  on_scene: ["disposed"],
};
const STATUS = {
  new: ["待派遣", "new"], dispatched: ["已派遣，待接受", "dispatched, to accept"], accepted: ["已接受", "accepted"],
  en_route: ["在途", "en route"], on_scene: ["已到场", "on scene"], disposed: ["已处置，待核查", "disposed, to be verified"],
  verified: ["已核查", "verified"], closed: ["已结案", "closed"], cancelled: ["已撤销", "cancelled"],
};
// The time-limited steps running in each status (twin/cases/limits.py STEPS), for the deadline shown.
const RUNNING = {
  new: ["dispatch"], dispatched: ["accept", "on_scene"], accepted: ["on_scene"], en_route: ["on_scene"],
  on_scene: ["dispose"], disposed: ["verify"], verified: ["close"],
};
const STEP_NAME = {
  dispatch: ["派遣", "dispatch"], accept: ["接受", "accept"], on_scene: ["到场", "on scene"], dispose: ["处置", "dispose"],
  verify: ["核查", "verify"], close: ["结案", "close"],
};
const PRIORITY = { 1: ["紧急", "urgent"], 2: ["较急", "high"], 3: ["一般", "normal"] };
const LEVEL = { 1: ["蓝色", "blue"], 2: ["黄色", "yellow"], 3: ["橙色", "orange"], 4: ["红色", "red"] };
const COMPASS = [["北", "N"], ["东北", "NE"], ["东", "E"], ["东南", "SE"], ["南", "S"], ["西南", "SW"], ["西", "W"],
  ["西北", "NW"]];

const caseOf = (task) => task.case || task.id;
const page = {
  unit: null, token: null, map: null, data: null, selected: null, timer: null, polls: 0,
  sent: [], cards: new Map(),
};

// ------------------------------------------------------------------ text
const both = ([zh, en]) => `${zh} · ${en}`;

// A label in both languages: <span lang=zh-CN>…</span> <span lang=en>…</span>.
function bi([zh, en], cls) {
  const e = el("span", cls);
  const z = el("span", null, zh);
  z.lang = "zh-CN";
  const n = el("span", null, en);
  n.lang = "en";
  e.append(z, " ", n);
  return e;
}

function minutes(seconds) {
  const m = Math.round(Math.abs(seconds) / 60);
  return m < 1 ? ["不到 1 分钟", "< 1 min"] : [`${m} 分钟`, `${m} min`];
}

function showNotice(text, kind = "error") {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

// ------------------------------------------------------------------ the address and the token
function readAddress() {
  const params = new URLSearchParams(location.hash.slice(1));
  const unit = params.get("unit");
  const token = params.get("token");
  if (unit && token) sessionStorage.setItem(TOKEN_KEY(unit), token);
  if (token) history.replaceState(null, "", location.pathname + (unit ? `#unit=${encodeURIComponent(unit)}` : ""));
  return { unit, token: unit ? sessionStorage.getItem(TOKEN_KEY(unit)) : null };
}

// The message for a refused request (the answer's status and {"error", "detail"}).
function problem(status, body) {
  const detail = typeof body.detail === "string" && body.detail ? ` (${body.detail})` : "";
  if (status === 401) {
    return "没有令牌，请使用指挥中心发送的本单位链接 · No token: open this unit's link from the command centre (401).";
  }
  if (status === 403 && body.error === "unit_tokens_missing") {
    return `系统未为本单位设置令牌 · This twin has no token for this unit (403)${detail}.`;
  }
  if (status === 403) {
    return "令牌无效，请向指挥中心索取本单位的最新链接 · The token was refused: ask the command centre for this " +
      "unit's current link (403).";
  }
  if (status === 404) return `系统中没有该任务 · The twin does not know this task (404)${detail}.`;
  if (status === 409 && body.error === "not_assigned") {
    return `该任务已不属于本单位 · This task is no longer this unit's (409)${detail}.`;
  }
  if (status === 409) return `该步骤与任务状态不符 · That step does not follow the task's status (409)${detail}.`;
  if (status === 422) return `系统拒绝了该请求 · The twin refused it (422)${detail}.`;
  if (status === 503 || status === 504) return `系统繁忙，请稍后重试 · The twin is busy: try again (${status}).`;
  return `请求失败 · The request failed: HTTP ${status}${detail}.`;
}

async function call(method, path, payload) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${page.token}` };
  if (payload) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload ? JSON.stringify(payload) : undefined });
  } catch (err) {
    return { ok: false, status: 0, message: `无法连接系统，请检查网络 · Cannot reach the twin: check the network (${err.message}).` };
  }
  const body = await response.json().catch(() => ({}));
  if (response.ok) return { ok: true, body };
  return { ok: false, status: response.status, body, message: problem(response.status, body) };
}

// ------------------------------------------------------------------ reading the tasks
async function poll() {
  clearTimeout(page.timer);
  const result = await call("GET", `/api/units/${encodeURIComponent(page.unit)}/tasks`);
  page.polls += 1;
  document.body.dataset.polls = String(page.polls);
  if (!result.ok && (result.status === 401 || result.status === 403)) {
    sessionStorage.removeItem(TOKEN_KEY(page.unit));
    document.body.dataset.state = "refused";
    showNotice(result.message);
    return; // no more polling: the link must be opened again
  }
  if (!result.ok) {
    document.body.dataset.state = "offline";
    showNotice(`${result.message} 每 5 秒自动重试 · Trying again every 5 s.`, "offline");
  } else {
    if (document.getElementById("notice").className === "offline") showNotice("");
    document.body.dataset.state = "live";
    page.data = result.body;
    render();
  }
  page.timer = setTimeout(poll, POLL_MS);
}

function render() {
  const { tasks, alerts, t } = page.data;
  if (!tasks.some((task) => caseOf(task) === page.selected)) page.selected = tasks.length ? caseOf(tasks[0]) : null;
  renderTasks(tasks, t);
  renderAlerts(alerts);
  renderMap();
  document.getElementById("refresh-line").textContent = `${clock(t)} · 更新 updated`;
}

// ------------------------------------------------------------------ tasks
const categoryName = (task) => [task.category_zh || task.category, task.category_en || task.category];

function placeName(place) {
  if (!place) return ["", ""];
  return [place.name_zh || place.name_en || place.key || "", place.name_en || place.key || ""];
}

// [text [zh, en], overdue?] of the task's next deadline at twin time t.
function dueText(task, t) {
  const deadlines = task.deadlines || {};
  const running = (RUNNING[task.status] || []).filter((s) => s in deadlines);
  if (!running.length) return null;
  const step = running.reduce((a, b) => (deadlines[a] <= deadlines[b] ? a : b));
  const left = deadlines[step] - t;
  const name = STEP_NAME[step];
  const late = left < 0 || (task.overdue || []).includes(step);
  const [mz, me] = minutes(left);
  if (late) return [[`${name[0]}已超时 ${mz}`, `${name[1]} overdue by ${me}`], true];
  return [[`${name[0]}时限 ${clock(deadlines[step])}（剩 ${mz}）`, `${name[1]} due ${clock(deadlines[step])} (in ${me})`], false];
}

function taskCard(task) {
  const li = el("li", "task");
  li.dataset.case = caseOf(task);
  const head = el("button", "task-head");
  head.type = "button";
  head.append(el("span", "prio"), el("span", "category"), el("span", "case-id mono", caseOf(task)));
  head.addEventListener("click", () => {
    page.selected = caseOf(task);
    render();
  });
  const note = el("textarea", "note");
  note.maxLength = 500;
  note.rows = 2;
  note.placeholder = "备注（可选）· Note (optional)";
  const noteLabel = el("label", "note-label");
  noteLabel.append(bi(["备注", "Note"]), note);
  li.append(head, el("div", "place"), el("div", "status"), el("div", "due"), el("div", "where"), noteLabel,
    el("div", "steps"), el("p", "problem"));
  li.querySelector(".problem").hidden = true;
  return li;
}

function updateCard(li, task, t) {
  li.dataset.status = task.status;
  li.classList.toggle("selected", caseOf(task) === page.selected);
  li.classList.remove("p1", "p2", "p3");
  li.classList.add(`p${task.priority}`);
  li.querySelector(".prio").replaceChildren(bi(PRIORITY[task.priority] || ["", ""]));
  li.querySelector(".category").replaceChildren(bi(categoryName(task)));
  li.querySelector(".place").replaceChildren(bi(placeName(task.place)));
  li.querySelector(".status").replaceChildren(bi(["状态", "Status"], "k"), " ", bi(STATUS[task.status] || [task.status, task.status]));
  const due = dueText(task, t);
  li.classList.toggle("overdue", Boolean(due && due[1]));
  li.querySelector(".due").replaceChildren(...(due ? [bi(due[0])] : []));
  li.querySelector(".where").replaceChildren(...whereText(task));
  const steps = li.querySelector(".steps");
  const next = NEXT[task.status] || [];
  if (steps.dataset.for !== `${task.status}`) {
    steps.dataset.for = task.status;
    steps.replaceChildren(...next.map((status, k) => stepButton(caseOf(task), status, k === 0)));
    if (!next.length) steps.append(bi(["等待指挥中心核查", "Waiting for the command centre"], "muted"));
  }
}

function stepButton(caseId, status, primary) {
  const b = el("button", `step ${status}${primary ? " primary" : ""}`);
  b.type = "button";
  b.dataset.status = status;
  b.append(bi(STEP[status]));
  b.addEventListener("click", () => sendStep(caseId, status));
  return b;
}

function renderTasks(tasks, t) {
  const list = document.getElementById("task-list");
  const seen = new Set();
  for (const task of tasks) {
    const id = caseOf(task);
    seen.add(id);
    let li = page.cards.get(id);
    if (!li) {
      li = taskCard(task);
      page.cards.set(id, li);
    }
    updateCard(li, task, t);
    list.append(li); // in the answer's order (newest first)
  }
  for (const [id, li] of page.cards) {
    if (!seen.has(id)) {
      li.remove();
      page.cards.delete(id);
    }
  }
  document.getElementById("task-count").textContent = String(tasks.length);
  document.getElementById("task-empty").hidden = tasks.length > 0;
}

async function sendStep(caseId, status) {
  const li = page.cards.get(caseId);
  const note = li.querySelector(".note");
  const buttons = li.querySelectorAll("button.step");
  buttons.forEach((b) => (b.disabled = true));
  const result = await call("POST", `/api/units/${encodeURIComponent(page.unit)}/tasks/${encodeURIComponent(caseId)}/status`,
    { status, note: note.value.trim() });
  buttons.forEach((b) => (b.disabled = false));
  const box = li.querySelector(".problem");
  if (!result.ok) {
    box.textContent = result.message;
    box.hidden = false;
    showNotice(result.message);
    if (result.status === 409) await poll(); // the task changed under the unit: show it as it is now
    return;
  }
  box.hidden = true;
  note.value = "";
  page.sent.push({ case: caseId, status, warning: result.body.warning || "" });
  if (result.body.warning) {
    showNotice(`已记录，状态未变 · Noted, the status did not change: ${result.body.warning}`, "warn");
  } else {
    showNotice(`已发送 · Sent: ${both(STEP[status])} (${caseId})`, "ok");
  }
  await poll();
}

// ------------------------------------------------------------------ alerts
function renderAlerts(alerts) {
  const list = document.getElementById("unit-alerts");
  list.replaceChildren(...alerts.map((a) => {
    const li = el("li", `unit-alert level-${a.level}`);
    li.dataset.id = a.identifier;
    li.append(bi(LEVEL[a.level] || ["", ""], "lvl"), el("div", "headline-zh", a.headline_zh || ""),
      el("div", "headline", a.headline || a.area_desc || a.identifier));
    return li;
  }));
  document.getElementById("alert-count").textContent = String(alerts.length);
  document.getElementById("alert-empty").hidden = alerts.length > 0;
}

// ------------------------------------------------------------------ distance, bearing and the map
const RADIUS_M = 6371008.8;
const rad = (d) => (d * Math.PI) / 180;

// Great-circle distance [m] and initial bearing [degree from north] from a to b ([lon, lat]).
export function distanceBearing(a, b) {
  const [l1, p1, l2, p2] = [rad(a[0]), rad(a[1]), rad(b[0]), rad(b[1])];
  const h = Math.sin((p2 - p1) / 2) ** 2 + Math.cos(p1) * Math.cos(p2) * Math.sin((l2 - l1) / 2) ** 2;
  const d = 2 * RADIUS_M * Math.asin(Math.min(1, Math.sqrt(h)));
  const y = Math.sin(l2 - l1) * Math.cos(p2);
  const x = Math.cos(p1) * Math.sin(p2) - Math.sin(p1) * Math.cos(p2) * Math.cos(l2 - l1);
  return [d, ((Math.atan2(y, x) * 180) / Math.PI + 360) % 360];
}

const distanceText = (m) => (m >= 1000 ? `${(m / 1000).toFixed(1)} km` : `${Math.round(m)} m`);

function whereText(task) {
  const me = page.data.position;
  if (!task.place) return [];
  if (!me) return [bi(["本单位位置未知", "No position of this unit yet"], "muted")];
  const [d, b] = distanceBearing([me.lon, me.lat], [task.place.lon, task.place.lat]);
  const [zh, en] = COMPASS[Math.round(b / 45) % 8];
  return [bi([`距离 ${distanceText(d)}，方位 ${zh} ${Math.round(b)}°`, `${distanceText(d)} away, ${en} ${Math.round(b)}°`])];
}

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, parent) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.append(e);
  return e;
}

async function loadMap() {
  const [grid, fit] = await Promise.all([getJson("/api/grid"), getJson("/api/basemap/projection")]);
  const [xmin, ymin, xmax, ymax] = grid.bounds;
  const projection = new Projection(fit);
  page.map = {
    width: xmax - xmin, height: ymax - ymin,
    local: (lon, lat) => {
      const [x, y] = projection.toXY(lon, lat);
      return [x - xmin, ymax - y];
    },
  };
  const base = document.getElementById("map-base");
  Object.entries({ x: 0, y: 0, width: page.map.width, height: page.map.height }).forEach(([k, v]) => base.setAttribute(k, v));
  base.addEventListener("load", () => (document.getElementById("unit-map").dataset.basemap = "loaded"), { once: true });
  base.setAttribute("href", "/api/basemap.png"); // drawn by the twin on its first request: it may take a moment
}

async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

// The view: the unit and the target with room around them (at least MIN_SPAN_M across), else the whole district.
const MIN_SPAN_M = 400;
function viewBox(points) {
  const m = page.map;
  if (!points.length) return [0, 0, m.width, m.height];
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const span = Math.max(MIN_SPAN_M, 1.5 * (Math.max(...xs) - Math.min(...xs)), 1.5 * (Math.max(...ys) - Math.min(...ys)));
  const cx = (Math.max(...xs) + Math.min(...xs)) / 2;
  const cy = (Math.max(...ys) + Math.min(...ys)) / 2;
  return [cx - span / 2, cy - span / 2, span, span];
}

function renderMap() {
  const nav = document.getElementById("nav-line");
  const task = page.data.tasks.find((x) => caseOf(x) === page.selected);
  const me = page.data.position;
  nav.replaceChildren(...navText(task, me));
  if (!page.map) return;
  const mapSvg = document.getElementById("unit-map");
  const mePoint = me ? page.map.local(me.lon, me.lat) : null;
  const target = task?.place ? page.map.local(task.place.lon, task.place.lat) : null;
  const box = viewBox([mePoint, target].filter(Boolean));
  mapSvg.setAttribute("viewBox", box.join(" "));
  const rect = mapSvg.getBoundingClientRect();
  const px = Math.max(box[2] / (rect.width || 1), box[3] / (rect.height || 1)); // metres per screen pixel
  const targetGroup = document.getElementById("map-target");
  targetGroup.replaceChildren();
  if (target) {
    svg("circle", { cx: target[0], cy: target[1], r: Math.max(task.place.radius_m || 50, 6 * px), class: "target-area" }, targetGroup);
    svg("circle", { cx: target[0], cy: target[1], r: 4 * px, class: "target-dot" }, targetGroup);
  }
  const meGroup = document.getElementById("map-me");
  meGroup.replaceChildren();
  if (mePoint) svg("circle", { cx: mePoint[0], cy: mePoint[1], r: 7 * px, "stroke-width": 2.5 * px, class: "me" }, meGroup);
  const line = document.getElementById("map-line");
  line.toggleAttribute("hidden", !(mePoint && target)); // an SVG element has no .hidden property
  if (mePoint && target) {
    Object.entries({ x1: mePoint[0], y1: mePoint[1], x2: target[0], y2: target[1], "stroke-width": 2 * px,
      "stroke-dasharray": `${6 * px} ${4 * px}` }).forEach(([k, v]) => line.setAttribute(k, v));
  }
  const alerts = document.getElementById("map-alerts");
  alerts.replaceChildren();
  for (const a of page.data.alerts) {
    if (!a.centre) continue;
    const [x, y] = page.map.local(...a.centre);
    svg("circle", { cx: x, cy: y, r: 6 * px, class: `alert-mark level-${a.level}` }, alerts);
  }
  mapSvg.dataset.view = box.map((v) => v.toFixed(0)).join(",");
}

function navText(task, me) {
  if (!task) return [bi(["等待任务", "Waiting for a task"])];
  const place = placeName(task.place);
  const out = [bi(["目标", "Target"], "k"), " ", bi(place, "target-name")];
  if (me && task.place) {
    const [d, b] = distanceBearing([me.lon, me.lat], [task.place.lon, task.place.lat]);
    const [zh, en] = COMPASS[Math.round(b / 45) % 8];
    const span = el("b", "distance", `${distanceText(d)} · ${zh} ${en} ${Math.round(b)}°`);
    out.push(" ", span);
  } else {
    out.push(" ", bi(["本单位位置未知", "no position yet"], "muted"));
  }
  return out;
}

// ------------------------------------------------------------------ start
async function main() {
  const { unit, token } = readAddress();
  page.unit = unit;
  page.token = token;
  document.getElementById("unit-id").textContent = unit || "–";
  window.citytwinUnit = { poll, state: () => page.data, sent: () => [...page.sent], distanceBearing };
  if (!unit) {
    document.body.dataset.state = "no-unit";
    showNotice("地址中没有单位，请使用指挥中心发送的链接 /unit#unit=…&token=… · No unit in the address: open the " +
      "link /unit#unit=…&token=… the command centre sent.");
    return;
  }
  if (!token) {
    document.body.dataset.state = "no-token";
    showNotice("没有令牌，请使用指挥中心发送的本单位链接 · No token: open this unit's link from the command centre " +
      "(…#unit=…&token=…).");
    return;
  }
  await loadMap().catch((err) => console.warn("map:", err.message));
  await poll();
}

main().catch((err) => {
  console.error(err);
  showNotice(`页面无法启动 · The page could not start: ${err.message}`);
});
