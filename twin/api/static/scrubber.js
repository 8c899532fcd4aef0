// The timeline scrubber: a slider over the stored level frames of the last hour (GET /api/frames "times"), the
// chosen frame's time in Shanghai, and a "Live · 实时" button back to the twin's current state.
//
// onChange(t) gets the time of the chosen frame [unix s] once the slider has rested for DEBOUNCE_MS (dragging
// across sixty frames asks for one picture, not sixty), and onChange(null) when the operator goes back to live.
// Keyboard: the slider takes the arrow keys, Page Up / Down, Home and End as any range input; Escape on it, or
// the button, goes live.

import { shanghaiTime } from "./levels.js";
import { el } from "./dom.js";

export const DEBOUNCE_MS = 150; // [design] long enough to skip the frames a drag passes over, short to the eye
const EMPTY_TEXT = "no stored frames yet · 暂无存储帧";
const LIVE_TEXT = "Live · 实时";

// "12 min ago · 12 分钟前" of a frame `dt` seconds before the newest.
function agoText(dt) {
  const minutes = Math.round(dt / 60);
  if (dt < 1) return "newest frame · 最新帧";
  if (minutes < 1) return `${Math.round(dt)} s ago · ${Math.round(dt)} 秒前`;
  return `${minutes} min ago · ${minutes} 分钟前`;
}

export class Scrubber {
  constructor(root, { onChange } = {}) {
    this.root = root;
    this.onChange = onChange || (() => {});
    this.times = [];
    this.live = true;
    this.timer = null;
    root.classList.add("scrub");
    this.range = el("input", "scrub-range");
    this.range.type = "range";
    this.range.min = "0";
    this.range.max = "0";
    this.range.step = "1";
    this.range.value = "0";
    this.range.setAttribute("aria-label", "Time of the map · 地图时间");
    this.time = el("output", "scrub-time", LIVE_TEXT);
    this.time.setAttribute("aria-live", "polite");
    this.ago = el("span", "scrub-ago");
    this.button = el("button", "scrub-live", LIVE_TEXT);
    this.button.type = "button";
    this.button.title = "Back to the live map · 返回实时地图";
    this.empty = el("span", "scrub-empty", EMPTY_TEXT);
    const readout = el("div", "scrub-readout");
    readout.append(this.time, this.ago);
    root.replaceChildren(this.range, readout, this.button, this.empty);

    this.range.addEventListener("input", () => {
      if (!this.times.length) return;
      this.live = false;
      this.show();
      clearTimeout(this.timer);
      this.timer = setTimeout(() => {
        this.timer = null;
        this.onChange(this.value);
      }, DEBOUNCE_MS);
    });
    this.range.addEventListener("keydown", (e) => {
      if (e.key === "Escape") this.goLive();
    });
    this.button.addEventListener("click", () => this.goLive());
    this.show();
  }

  // The chosen frame's time [unix s], or null when live.
  get value() {
    if (this.live || !this.times.length) return null;
    return this.times[Number(this.range.value)] ?? null;
  }

  // times: the stored frames' times, ascending [unix s]. A chosen frame stays chosen while it is stored; when
  // it has dropped out of the hour, the oldest stored frame is taken and onChange says so.
  setTimes(times) {
    const before = this.value;
    this.times = [...(times || [])].filter(Number.isFinite).sort((a, b) => a - b);
    const n = this.times.length;
    this.range.max = String(Math.max(0, n - 1));
    if (!n) {
      this.live = true;
    } else if (this.live) {
      this.range.value = String(n - 1);
    } else {
      let i = this.times.findIndex((t) => t >= before);
      if (i < 0) i = n - 1;
      this.range.value = String(i);
    }
    this.show();
    if (before !== null && this.value !== before) this.onChange(this.value);
  }

  goLive() {
    clearTimeout(this.timer);
    this.timer = null;
    const was = this.live;
    this.live = true;
    if (this.times.length) this.range.value = String(this.times.length - 1);
    this.show();
    if (!was) this.onChange(null);
  }

  // The read-out, the button's state and the empty note.
  show() {
    const n = this.times.length;
    const t = this.value;
    this.root.classList.toggle("scrub-is-live", this.live);
    this.root.classList.toggle("scrub-is-empty", n === 0);
    this.empty.hidden = n > 0;
    this.range.disabled = n === 0;
    this.button.setAttribute("aria-pressed", String(this.live));
    this.time.textContent = t === null ? LIVE_TEXT : shanghaiTime(t);
    this.ago.textContent = t === null || !n ? "" : agoText(this.times[n - 1] - t);
    this.range.setAttribute("aria-valuetext", t === null ? LIVE_TEXT : `${shanghaiTime(t)} (Shanghai · 上海时间)`);
    this.range.title = n ? `${shanghaiTime(this.times[0])} – ${shanghaiTime(this.times[n - 1])}` : EMPTY_TEXT;
  }
}
