// The cases panel (立案 → 派遣 → 处置 → 核查 → 结案) under the alerts: open cases with priority, category, place,
// status, assignee and time to the running step's deadline, overdue ones highlighted and counted; the operator's
// steps (Dispatch… with the suggested units, Verify, Close, Cancel); and today's ledger line (风险清零).
//
// app.js reads GET /api/cases?open=true after every tick and /ws "case" event (one request at a time) and
// GET /api/ledger at most every LEDGER_EVERY_MS and after case events. Without a token the buttons are disabled.

import { getJson, operatorName, setOperatorName, token, writeJson } from "./api.js";
import { clockTime, duration, showNotice } from "./panels.js";
import { el } from "./dom.js";

export const LEDGER_EVERY_MS = 10000;
// [English, Chinese]
export const CASE_STATUS = {
  new: ["new", "待派遣"], dispatched: ["dispatched", "已派遣"], accepted: ["accepted", "已接受"], en_route: ["en route", "在途"],
  on_scene: ["on scene", "已到场"], disposed: ["disposed", "已处置"], verified: ["verified", "已核查"],
  closed: ["closed", "已结案"], cancelled: ["cancelled", "已撤销"],
};
const PRIORITY = { 1: ["P1 urgent", "紧急"], 2: ["P2 high", "较急"], 3: ["P3 normal", "一般"] };
// The time-limited steps running in each status (twin/cases/limits.py STEPS).
const RUNNING = {
  new: ["dispatch"], dispatched: ["accept", "on_scene"], accepted: ["on_scene"], en_route: ["on_scene"],
  on_scene: ["dispose"], disposed: ["verify"], verified: ["close"],
};
const STEP_NAME = {
  dispatch: ["dispatch", "派遣"], accept: ["accept", "接受"], on_scene: ["on scene", "到场"], dispose: ["dispose", "处置"],
  verify: ["verify", "核查"], close: ["close", "结案"],
};
// The operator's steps: [kind, English, Chinese, statuses it is offered in].
const STEPS = [
  ["verified", "Verify", "核查", ["disposed"]],
  ["closed", "Close", "结案", ["verified"]],
  ["cancelled", "Cancel", "撤销", ["new", "dispatched", "accepted", "en_route", "on_scene", "disposed", "verified"]],
];
const DISPATCHABLE = ["new", "dispatched", "accepted", "en_route"];
const both = ([en, zh]) => `${en} · ${zh}`;

// [text, overdue?] of the running step's deadline at twin time t, null without one.
export function dueText(c, t) {
  const deadlines = c.deadlines || {};
  const running = (RUNNING[c.status] || []).filter((s) => s in deadlines);
  if (!running.length || t == null) return null;
  const step = running.reduce((a, b) => (deadlines[a] <= deadlines[b] ? a : b));
  const left = deadlines[step] - t;
  const [en, zh] = STEP_NAME[step];
  if (left < 0 || (c.overdue || []).includes(step)) {
    return [`${en} overdue ${duration(-left)} · ${zh}超时`, true];
  }
  return [`${en} due in ${duration(left)} (${clockTime(deadlines[step])}) · ${zh}时限`, false];
}

export class CasePanel {
  constructor(root, onDispatch, onStep) {
    this.root = root;
    this.list = root.querySelector("#case-list");
    this.count = root.querySelector("#case-count");
    this.overdue = root.querySelector("#case-overdue");
    this.empty = root.querySelector("#case-empty");
    this.ledger = root.querySelector("#ledger-line");
    this.names = new Map(); // category -> [English, Chinese], from the Open311 service list
    this.list.addEventListener("click", (e) => {
      const button = e.target.closest("button");
      if (!button || button.disabled) return;
      const id = button.closest("[data-id]").dataset.id;
      if (button.classList.contains("dispatch")) onDispatch(id);
      else if (button.dataset.kind) onStep(id, button.dataset.kind);
    });
  }

  // The categories' names (GET /open311/v2/services.json in each language); the codes are shown until then.
  async loadNames() {
    const [en, zh] = await Promise.all(["en-US", "zh-CN"].map((l) => getJson(`/open311/v2/services.json?locale=${l}`)));
    const chinese = new Map(zh.map((s) => [s.service_code, s.service_name]));
    for (const s of en) this.names.set(s.service_code, [s.service_name, chinese.get(s.service_code) || ""]);
  }

  categoryName(code) {
    const names = this.names.get(code);
    return names ? both(names) : code;
  }

  // Open cases, most urgent first: overdue, then priority, then the oldest.
  render(cases, t, canWrite) {
    this.root.hidden = false;
    const rows = [...cases].sort((a, b) => Boolean(b.overdue?.length) - Boolean(a.overdue?.length) ||
      a.priority - b.priority || a.opened_at - b.opened_at);
    const late = rows.filter((c) => c.overdue?.length).length;
    this.count.textContent = String(rows.length);
    this.overdue.textContent = `${late} overdue · 超时`;
    this.overdue.hidden = late === 0;
    this.root.dataset.overdue = String(late);
    this.empty.hidden = rows.length > 0;
    this.list.replaceChildren(...rows.map((c) => this.row(c, t, canWrite)));
  }

  row(c, t, canWrite) {
    const li = el("li", `case p${c.priority}`);
    li.dataset.id = c.id;
    li.dataset.status = c.status;
    const due = dueText(c, t);
    if (due?.[1] || c.overdue?.length) li.classList.add("overdue");
    const head = el("div", "case-head");
    head.append(el("span", "prio", both(PRIORITY[c.priority] || [`P${c.priority}`, ""])),
      el("span", "category", this.categoryName(c.category)), el("span", "case-id", c.id));
    const place = c.place || {};
    const where = el("div", "case-place", [place.name_zh, place.name_en].filter(Boolean).join(" · ") || place.key || "");
    const status = el("div", "case-status");
    status.append(el("span", "status", both(CASE_STATUS[c.status] || [c.status, ""])),
      el("span", "assignee", c.assignee ? ` → ${c.assignee}` : " · unassigned · 未派遣"));
    li.append(head, where, status);
    if (due) li.append(el("div", "case-due", due[0]));
    li.append(this.buttons(c, canWrite));
    return li;
  }

  buttons(c, canWrite) {
    const box = el("div", "case-actions");
    const title = canWrite ? "" : "Read-only · 只读: open the #token=… link to act";
    if (DISPATCHABLE.includes(c.status)) {
      const b = el("button", "dispatch", c.assignee ? "Re-dispatch… · 改派" : "Dispatch… · 派遣");
      b.disabled = !canWrite;
      b.title = title || "choose a unit to send (suggestions by travel time)";
      box.append(b);
    }
    for (const [kind, en, zh, from] of STEPS) {
      if (!from.includes(c.status)) continue;
      const b = el("button", `step ${kind}`, `${en} · ${zh}`);
      b.dataset.kind = kind;
      b.disabled = !canWrite;
      b.title = title;
      box.append(b);
    }
    return box;
  }

  // Today's row of the ledger: opened, closed, open, overdue.
  renderLedger(ledger) {
    const today = ledger?.days?.[ledger.days.length - 1];
    if (!today) {
      this.ledger.textContent = "";
      return;
    }
    this.ledger.replaceChildren(
      el("span", "k", "Today · 今日 "),
      el("span", "v", `opened ${today.opened} · closed ${today.closed} · open ${today.open} · overdue ${today.overdue}`),
      el("span", "zh", ` (立案 ${today.opened} · 结案 ${today.closed} · 未结 ${today.open} · 超时 ${today.overdue}) `),
    );
    const csv = el("a", "csv", "CSV");
    csv.href = "/api/ledger.csv";
    csv.download = "";
    this.ledger.append(csv);
    this.ledger.dataset.open = String(today.open);
  }

  hide() {
    this.root.hidden = true;
  }
}

// ------------------------------------------------------------------ dialogs
function problemLine(id, text) {
  const p = document.getElementById(id);
  p.textContent = text;
  p.hidden = !text;
}

function caseLine(c) {
  if (!c) return "";
  const place = c.place || {};
  return `${c.id}: ${c.category} · ${[place.name_zh, place.name_en].filter(Boolean).join(" · ")}`;
}

function waitClose(dialog) {
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

function suggestionChoice(s, checked) {
  const label = el("label", "check");
  const input = document.createElement("input");
  input.type = "radio";
  input.name = "dispatch-unit";
  input.value = s.unit;
  input.checked = checked;
  const by = s.by === "road" ? "by road · 按道路" : "straight line · 直线";
  label.append(input, ` ${s.unit} (${s.unit_type}) · ETA ${duration(s.eta_s)} · ${Math.round(s.distance_m)} m · ${by}`);
  return label;
}

// Dispatch: the suggestions (nearest free units of the duty) to choose from, or a unit typed in. Resolves to the
// changed case, or null when cancelled or refused (the dialog says why).
export async function dispatchDialog(c, side) {
  if (!token()) {
    showNotice(side, "No API token: open the dashboard from the link with #token=… to dispatch units.");
    return null;
  }
  const dialog = document.getElementById("dispatch-dialog");
  document.getElementById("dispatch-case").textContent = caseLine(c);
  const box = document.getElementById("dispatch-units");
  box.querySelectorAll("label, p").forEach((e) => e.remove());
  box.append(el("p", "muted", "Looking for free units… · 正在查找空闲单位…"));
  document.getElementById("dispatch-other").value = "";
  document.getElementById("dispatch-by").value = operatorName() || "";
  document.getElementById("dispatch-why").value = "";
  problemLine("dispatch-problem", "");
  const shown = waitClose(dialog);
  getJson(`/api/cases/${encodeURIComponent(c.id)}/suggestions`).then((body) => {
    box.querySelectorAll("label, p").forEach((e) => e.remove());
    if (!body.suggestions.length) box.append(el("p", "muted", "No free unit of this duty · 没有空闲的对口单位"));
    body.suggestions.forEach((s, k) => box.append(suggestionChoice(s, k === 0)));
    box.dataset.loaded = String(body.suggestions.length);
  }).catch((err) => {
    box.querySelectorAll("label, p").forEach((e) => e.remove());
    box.append(el("p", "problem", `No suggestions: ${err.message}`));
  });
  document.getElementById("dispatch-form").onsubmit = async (e) => {
    e.preventDefault();
    if (e.submitter?.value === "cancel") return dialog.close("cancel");
    const other = document.getElementById("dispatch-other").value.trim();
    const chosen = box.querySelector("input[name=dispatch-unit]:checked");
    const unit = other || chosen?.value || "";
    const operator = document.getElementById("dispatch-by").value.trim();
    const reason = document.getElementById("dispatch-why").value.trim();
    if (!operator) return problemLine("dispatch-problem", "Say who dispatches · 请填写操作员.");
    const result = await writeJson("POST", `/api/cases/${encodeURIComponent(c.id)}/dispatch`,
      { operator, unit, reason }, "dispatch units");
    if (!result.ok) return problemLine("dispatch-problem", result.message);
    setOperatorName(operator);
    dialog.result = result.body;
    dialog.close("ok");
  };
  dialog.result = null;
  return (await shown) ? dialog.result : null;
}

// An operator's step (verify, close, cancel) with who and why. Resolves to the changed case or null.
export async function stepDialog(c, kind, side) {
  if (!token()) {
    showNotice(side, "No API token: open the dashboard from the link with #token=… to act on cases.");
    return null;
  }
  const [, en, zh] = STEPS.find((s) => s[0] === kind);
  const dialog = document.getElementById("step-dialog");
  document.getElementById("step-title").textContent = `${en} case · ${zh}`;
  document.getElementById("step-case").textContent = caseLine(c);
  document.getElementById("step-by").value = operatorName() || "";
  document.getElementById("step-why").value = "";
  document.getElementById("step-ok").textContent = `${en} · ${zh}`;
  problemLine("step-problem", "");
  const shown = waitClose(dialog);
  document.getElementById("step-form").onsubmit = async (e) => {
    e.preventDefault();
    if (e.submitter?.value === "cancel") return dialog.close("cancel");
    const operator = document.getElementById("step-by").value.trim();
    const reason = document.getElementById("step-why").value.trim();
    if (!operator || !reason) return problemLine("step-problem", "Say who and why · 请填写操作员和原因.");
    const result = await writeJson("POST", `/api/cases/${encodeURIComponent(c.id)}/transition`,
      { operator, kind, reason }, "act on cases");
    if (!result.ok) return problemLine("step-problem", result.message);
    setOperatorName(operator);
    dialog.result = result.body;
    dialog.close("ok");
  };
  dialog.result = null;
  return (await shown) ? dialog.result : null;
}
