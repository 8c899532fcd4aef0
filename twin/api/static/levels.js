// Warning levels and times as the operator reads them, shared by the page's modules (labels, scrubber, sound,
// history, building).
//
// Levels: 0 none, 1 blue, 2 yellow, 3 orange, 4 red (GB/T and CAP colours: palette.css --level-1 … --level-4);
// -1 no data. Times: the twin's clock in Shanghai time (China Standard Time, UTC+8, no daylight saving since
// 1991), computed by offset rather than through Intl so it is the same on every machine.

export const LEVEL_NAMES = {
  0: ["none", "无"], 1: ["blue", "蓝"], 2: ["yellow", "黄"], 3: ["orange", "橙"], 4: ["red", "红"],
};
const NO_DATA = ["no data", "无数据"];

// The CSS colour of a level: "var(--level-N)" for 1…4 (palette.css), the "all clear" green for 0 and the muted
// grey for no data (-1, null, anything else).
export function levelColourVar(level) {
  if (level >= 1 && level <= 4) return `var(--level-${Math.trunc(level)})`;
  if (level === 0) return "var(--ok)";
  return "var(--muted)";
}

// A level's name: "red" (lang "en"), "红" (lang "zh"), else both "red · 红".
export function levelLabel(level, lang) {
  const [en, zh] = LEVEL_NAMES[level] || NO_DATA;
  if (lang === "en") return en;
  if (lang === "zh") return zh;
  return `${en} · ${zh}`;
}

const SHANGHAI_OFFSET_S = 8 * 3600; // UTC+8 [s]

// "HH:MM:SS" (or "HH:MM" without seconds) of a unix time [s] in Shanghai; "–" without a time.
export function shanghaiTime(t, seconds = true) {
  if (t == null || !Number.isFinite(t)) return "–";
  const text = new Date((t + SHANGHAI_OFFSET_S) * 1000).toISOString().slice(11, 19);
  return seconds ? text : text.slice(0, 5);
}

// "42 min", "1 h 05 min", "12 s" of a duration [s]; "–" without one.
export function durationText(s) {
  if (s == null || !Number.isFinite(s)) return "–";
  const whole = Math.max(0, Math.round(s));
  if (whole < 60) return `${whole} s`;
  const minutes = Math.floor(whole / 60);
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}
