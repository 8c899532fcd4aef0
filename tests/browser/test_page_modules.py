"""The dashboard's self-contained modules (issue 18) in a real browser, on synthetic data: map labels
(labels.js), the timeline scrubber (scrubber.js), the red-alert alarm (sound.js), the alert history
(history.js), the building record (building.js) and the level helpers (levels.js).

The modules are served by the real app (the quiet `idle_service`); the test page is an empty document of the
app's origin with the dashboard's own Content-Security-Policy (Playwright answers its address), so the
modules run under the same rules as on the dashboard. Each test imports the modules into that page and
checks what they draw and call. Times: T0 = 2025-12-31 22:00:00 in Shanghai (UTC+8).
"""

from __future__ import annotations

import pytest

from tests.browser.conftest import report
from twin.api import serve
from twin.api.page import CSP

pytestmark = pytest.mark.slow

T0 = 1_767_189_600  # 2025-12-31 22:00:00 Shanghai
BLANK = "/__modules_test__"
HTML = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>modules</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/palette.css"><link rel="stylesheet" href="/static/modules.css"></head>
<body><svg id="lbl-svg" width="800" height="600"><g id="labels"></g></svg>
<div id="scrub"></div><div id="hist"></div><div id="bldg"></div></body></html>"""

# A stand-in for the MapView: grid (x east, y north) -> local (from the north-west corner (1000, 5000), y down)
# -> screen (view k, tx, ty), on an 800 x 600 px map.
FAKE_MAP = """
  const map = {
    view: { k: 1, tx: 0, ty: 0 },
    localOfGrid: (x, y) => [x - 1000, 5000 - y],
    screenOfLocal(lx, ly) { const v = this.view; return [lx * v.k + v.tx, ly * v.k + v.ty]; },
    viewport: () => ({ w: 800, h: 600 }),
  };
  // centre the view on a grid point at zoom k
  const centre = (k, x, y) => {
    const [lx, ly] = map.localOfGrid(x, y);
    map.view = { k, tx: 400 - lx * k, ty: 300 - ly * k };
  };
"""


@pytest.fixture(scope="module")
def api(idle_service):
    handle = serve(idle_service, port=0)
    yield handle
    handle.stop()


@pytest.fixture
def blank(page, api):
    """The empty test page of the app's origin, under the dashboard's CSP; console errors are collected (a CSP
    violation is one)."""
    page.route(f"{api.url}{BLANK}", lambda route: route.fulfill(
        status=200, body=HTML, headers={"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": CSP}))
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.goto(f"{api.url}{BLANK}")
    yield page
    assert not page.errors, page.errors
    assert not page.console_errors, page.console_errors


# ---------------------------------------------------------------- levels.js
def test_levels_names_colours_and_shanghai_times(blank):
    out = blank.evaluate("""async (t0) => {
      const m = await import("/static/levels.js");
      return {
        names: m.LEVEL_NAMES, colour4: m.levelColourVar(4), colour1: m.levelColourVar(1), colour0: m.levelColourVar(0),
        colourNone: m.levelColourVar(-1), zh: m.levelLabel(3, "zh"), en: m.levelLabel(3, "en"), both: m.levelLabel(4),
        none: m.levelLabel(-1), time: m.shanghaiTime(t0 + 3723), short: m.shanghaiTime(t0 + 3723, false),
        dash: m.shanghaiTime(null), lasted: [m.durationText(42), m.durationText(37 * 60), m.durationText(3900)],
      };
    }""", T0)
    assert out["names"] == {"0": ["none", "无"], "1": ["blue", "蓝"], "2": ["yellow", "黄"], "3": ["orange", "橙"],
                            "4": ["red", "红"]}
    assert (out["colour4"], out["colour1"], out["colour0"], out["colourNone"]) == \
        ("var(--level-4)", "var(--level-1)", "var(--ok)", "var(--muted)")
    assert (out["zh"], out["en"], out["both"], out["none"]) == ("橙", "orange", "red · 红", "no data · 无数据")
    assert (out["time"], out["short"], out["dash"]) == ("23:02:03", "23:02", "–")  # 22:00:00 + 1 h 2 min 3 s
    assert out["lasted"] == ["42 s", "37 min", "1 h 05 min"]


# ---------------------------------------------------------------- labels.js
LABELS_JS = FAKE_MAP + """
  const { MapLabels, textWidth } = await import("/static/labels.js");
  const group = document.getElementById("labels");
  const labels = new MapLabels(group, map);
  const texts = () => [...group.querySelectorAll("text")].filter((t) => t.getAttribute("display") !== "none")
    .map((t) => t.textContent);
"""


def test_labels_declutter_by_rank_then_length(blank):
    out = blank.evaluate("""async () => {""" + LABELS_JS + """
      centre(1, 1400, 4700);
      // a place and a road name on the same spot: the place (rank 1) wins over the road (rank 3)
      labels.load({ labels: [
        { id: "road", kind: "road", name: "中山东一路", name_en: "East Zhongshan No. 1 Rd", x: 1400, y: 4700,
          angle_deg: 0, rank: 3, length_m: 900 },
        { id: "bund", kind: "place", name: "外滩", name_en: "The Bund", x: 1402, y: 4702, rank: 1 },
      ] });
      const overlapping = labels.visibleIds();
      // two roads of the same rank crossing: the longer one is named
      labels.load({ labels: [
        { id: "short", kind: "road", name: "四川中路", x: 1400, y: 4700, angle_deg: 90, rank: 3, length_m: 400 },
        { id: "long", kind: "road", name: "南京东路", x: 1400, y: 4700, angle_deg: 0, rank: 3, length_m: 1600 },
      ] });
      const crossing = labels.visibleIds();
      // 200 m apart at 1 px/m: both shown; the road turned along its 30° (counter-clockwise) direction
      labels.load({ labels: [
        { id: "road", kind: "road", name: "中山东一路", x: 1400, y: 4700, angle_deg: 30, rank: 3, length_m: 900 },
        { id: "bund", kind: "place", name: "外滩", x: 1400, y: 4900, rank: 1 },
      ] });
      const apart = labels.visibleIds();
      const transform = group.querySelector('[data-id="road"]').getAttribute("transform");
      return { overlapping, crossing, apart, transform, shown: group.dataset.shown,
               halo: getComputedStyle(group.querySelector("text")).paintOrder,
               fill: getComputedStyle(group.querySelector('[data-id="road"]')).fill,
               w: [textWidth("外滩", 10), textWidth("Bund", 10)] };
    }""")
    assert out["overlapping"] == ["bund"]
    assert out["crossing"] == ["long"]
    assert sorted(out["apart"]) == ["bund", "road"] and out["shown"] == "2"
    assert out["transform"] == "translate(400.0 300.0) rotate(-30.0)"  # SVG turns clockwise: the negative
    assert out["halo"].startswith("stroke")
    assert out["fill"] == "rgb(213, 221, 231)"  # off-white, no warning hue
    assert out["w"] == pytest.approx([20, 22])  # CJK 1 em, Latin 0.55 em at 10 px


def test_the_width_estimate_is_near_the_drawn_width(blank):
    """The declutter's width estimate (no layout read) against the width the browser draws (a layout read, here
    only), for names of the Bund in both scripts and every kind of label: within 15 %."""
    out = blank.evaluate("""async () => {""" + LABELS_JS + """
      centre(1, 1400, 4700);
      const names = ["中山东一路", "East Zhongshan No. 1 Road", "外滩", "The Bund", "南京东路步行街", "Nanjing Rd (E)"];
      const kinds = ["road", "place", "district", "metro", "poi", "water"];
      const out = [];
      centre(3, 1400, 4700);  // 3 px/m: every kind is named; the names 36 px apart
      for (const kind of kinds) {
        labels.load({ labels: names.map((name, i) => ({ id: String(i), kind, name, x: 1400, y: 4730 - 12 * i })) });
        for (const item of labels.items.filter((it) => it.shown)) {
          out.push({ text: `${item.text.zh} (${kind})`, ratio: item.width.zh / item.el.getComputedTextLength() });
        }
      }
      return out;
    }""")
    low, high = min(r["ratio"] for r in out), max(r["ratio"] for r in out)
    report(f"labels: estimated / drawn text width {low:.2f} … {high:.2f}",
           labels_width_ratio_min=round(low, 3), labels_width_ratio_max=round(high, 3))
    assert len(out) == 36
    for r in out:
        assert 0.85 < r["ratio"] < 1.18, r


def test_labels_follow_the_language_with_fallbacks(blank):
    out = blank.evaluate("""async () => {""" + LABELS_JS + """
      centre(1, 1400, 4500);
      labels.load({ labels: [
        { id: "a", kind: "place", name: "外滩", name_en: "The Bund", x: 1400, y: 4700, rank: 1 },
        { id: "b", kind: "place", name: "外白渡桥", x: 1400, y: 4500, rank: 1 },
        { id: "c", kind: "place", name_en: "Lujiazui", x: 1400, y: 4300, rank: 1 },
      ] });
      const zh = texts();
      labels.setLanguage("en");
      const en = texts();
      const langs = [...group.querySelectorAll("text")].map((t) => t.getAttribute("lang"));
      labels.setLanguage("zh");
      return { zh, en, langs, back: texts() };
    }""")
    assert out["zh"] == ["外滩", "外白渡桥", "Lujiazui"]
    assert out["en"] == ["The Bund", "外白渡桥", "Lujiazui"]
    assert out["langs"] == ["en", "en", "en"] and out["back"] == out["zh"]


def test_labels_appear_by_zoom(blank):
    out = blank.evaluate("""async () => {""" + LABELS_JS + """
      const at = (label, k) => {
        centre(k, label.x, label.y);
        labels.load({ labels: [label] });
        return labels.visibleIds().length === 1;
      };
      const place = { id: "p", kind: "place", name: "外滩", x: 1400, y: 4700, rank: 1 };
      const major = { id: "m", kind: "road", name: "延安东路", x: 1400, y: 4700, rank: 2, length_m: 3000 };
      const minor = { id: "n", kind: "road", name: "滇池路", x: 1400, y: 4700, rank: 4, length_m: 500, angle_deg: 0 };
      const path = { id: "f", kind: "road", name: "滨江步道", x: 1400, y: 4700, rank: 5, length_m: 300, angle_deg: 0 };
      const stub = { id: "s", kind: "road", name: "圆明园路", x: 1400, y: 4700, rank: 4, length_m: 20, angle_deg: 0 };
      return {
        place: [at(place, 0.05), at(place, 10)],
        major: [at(major, 0.2), at(major, 0.3)],
        minor: [at(minor, 0.8), at(minor, 1.2)],
        path: [at(path, 2.5), at(path, 3.5)],
        // 20 m of road is 60 px at 3 px/m, shorter than its four characters (44 px at 11 px): shown from 2.2
        stub: [at(stub, 1.5), at(stub, 3)],
      };
    }""")
    assert out == {"place": [True, True], "major": [False, True], "minor": [False, True], "path": [False, True],
                   "stub": [False, True]}


def test_two_thousand_labels_render_within_budget(blank):
    out = blank.evaluate("""async () => {""" + LABELS_JS + """
      // 2,000 labels over 1,600 x 1,200 m (a deterministic LCG), every kind and rank; viewed whole at 0.5 px/m
      // (the minor roads, paths and POIs too small to name) and a quarter of it at 1 px/m
      let seed = 7;
      const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
      const kinds = ["road", "road", "road", "place", "poi", "metro", "water"];
      const body = { labels: [] };
      for (let i = 0; i < 2000; i++) {
        const kind = kinds[i % kinds.length];
        body.labels.push({ id: String(i), kind, name: "南京东路步行街".slice(0, 2 + (i % 5)), name_en: `Road ${i}`,
          x: 1000 + rand() * 1600, y: 5000 - rand() * 1200, angle_deg: kind === "road" ? rand() * 180 - 90 : 0,
          rank: 1 + (i % 5), length_m: 100 + rand() * 900 });
      }
      const measure = (k) => {
        centre(k, 1800, 4400);
        const times = [];
        for (let i = 0; i < 80; i++) {
          map.view = { ...map.view, tx: map.view.tx + (i % 2 ? 7 : -5) };  // panning
          labels.render();
          if (i >= 20) times.push(labels.lastRenderMs);  // after the JIT has compiled render (a few ms each before)
        }
        times.sort((a, b) => a - b);
        return { median: times[30], p90: times[54], max: times[59], shown: labels.shown };
      };
      centre(1, 1800, 4400);
      const t = performance.now();
      labels.load(body);
      const first = performance.now() - t;
      const near = measure(1);
      const whole = measure(0.5);
      labels.setLanguage("en");
      const en = labels.lastRenderMs;
      return { first, near, whole, en, elements: group.childElementCount };
    }""")
    near, whole = out["near"], out["whole"]
    report(f"labels: 2,000 labels, render median {near['median']:.2f} ms (90 % {near['p90']:.2f}, max "
           f"{near['max']:.2f}) at 1 px/m with {near['shown']} shown, {whole['median']:.2f} ms (90 % "
           f"{whole['p90']:.2f}, max {whole['max']:.2f}) at 0.5 px/m with {whole['shown']} shown; first render "
           f"(making the elements) {out['first']:.1f} ms, language switch {out['en']:.1f} ms",
           labels_render_median_ms=round(max(near["median"], whole["median"]), 3),
           labels_render_max_ms=round(max(near["max"], whole["max"]), 3), labels_first_render_ms=round(out["first"], 2))
    assert 50 < near["shown"] < 2000 and 50 < whole["shown"] < 2000 and out["elements"] >= near["shown"]
    for figures in (near, whole):
        # the budget is 8 ms; a shared, busy machine stalls the odd render (a pause of the process, not the code):
        # the median against the budget, nine in ten within twice it
        assert figures["median"] < 8, out
        assert figures["p90"] < 16, out


# ---------------------------------------------------------------- scrubber.js
def test_the_scrubber_reports_the_chosen_frame_and_live(blank):
    blank.evaluate("""async (t0) => {
      const { Scrubber } = await import("/static/scrubber.js");
      const root = document.getElementById("scrub");
      window.calls = [];
      window.scrubber = new Scrubber(root, { onChange: (t) => {
        window.calls.push(t);
        window.lastCallAt = performance.now();
        if (window.onCall) window.onCall();
      } });
    }""", T0)
    empty = blank.evaluate("""() => ({ text: document.getElementById("scrub").textContent, value: scrubber.value,
                                      disabled: document.querySelector(".scrub-range").disabled })""")
    assert "no stored frames yet" in empty["text"] and empty["value"] is None and empty["disabled"]

    out = blank.evaluate("""async (t0) => {
      scrubber.setTimes([t0, t0 + 60, t0 + 120, t0 + 180]);
      const range = document.querySelector(".scrub-range");
      const live = { value: scrubber.value, label: document.querySelector(".scrub-time").textContent,
                     index: range.value, emptyHidden: document.querySelector(".scrub-empty").hidden };
      const called = new Promise((resolve) => { window.onCall = resolve; });
      range.value = "1";
      range.dispatchEvent(new Event("input"));
      range.value = "2";
      range.dispatchEvent(new Event("input"));
      const lastInput = performance.now();
      const label = document.querySelector(".scrub-time").textContent;
      await called;
      return { live, label, waited: window.lastCallAt - lastInput, calls: [...window.calls], value: scrubber.value };
    }""", T0)
    assert out["live"] == {"value": None, "label": "Live · 实时", "index": "3", "emptyHidden": True}
    assert out["label"] == "22:02:00"  # shown at once, asked for after the slider rests
    assert out["calls"] == [T0 + 120] and out["value"] == T0 + 120
    assert out["waited"] >= 140

    # still stored: kept without a call; dropped out of the hour: the oldest stored frame, with a call
    kept = blank.evaluate("""(t0) => { scrubber.setTimes([t0 + 60, t0 + 120, t0 + 180, t0 + 240]);
                                       return [scrubber.value, calls.length]; }""", T0)
    assert kept == [T0 + 120, 1]
    moved = blank.evaluate("""(t0) => { scrubber.setTimes([t0 + 180, t0 + 240]);
                                        return [scrubber.value, [...calls]]; }""", T0)
    assert moved == [T0 + 180, [T0 + 120, T0 + 180]]

    blank.click(".scrub-live")
    assert blank.evaluate("() => [scrubber.value, calls.length, calls[2]]") == [None, 3, None]
    assert blank.evaluate("() => document.querySelector('.scrub-live').getAttribute('aria-pressed')") == "true"

    # by keyboard: an arrow key steps back one frame, Escape goes live again
    blank.focus(".scrub-range")
    blank.keyboard.press("ArrowLeft")
    blank.wait_for_function("() => window.calls.length === 4")
    assert blank.evaluate("() => [calls[3], document.querySelector('.scrub-time').textContent]") == [T0 + 180,
                                                                                                     "22:03:00"]
    blank.keyboard.press("Escape")
    assert blank.evaluate("() => [calls.length, calls[4], scrubber.value]") == [5, None, None]


# ---------------------------------------------------------------- sound.js
def test_new_reds_are_observed_reds_that_were_not_red(blank):
    out = blank.evaluate("""async () => {
      const { newReds } = await import("/static/sound.js");
      const f = (level, certainty) => ({ properties: { level, ...(certainty ? { certainty } : {}) } });
      const previous = new Map([["up", f(3, "Observed")], ["red", f(4, "Observed")], ["fc", f(2, "Likely")]]);
      const next = new Map([
        ["up", f(4, "Observed")],   // orange -> red: new
        ["red", f(4, "Observed")],  // already red: not new
        ["fc", f(4, "Likely")],     // a forecast red: never
        ["bare", f(4)],             // no certainty = observed, not in previous: new
        ["yellow", f(2)],           // not red
      ]);
      return { changed: newReds(previous, next), first: newReds(null, next), none: newReds(next, next) };
    }""")
    assert out == {"changed": ["up", "bare"], "first": ["up", "red", "bare"], "none": []}


def test_the_alarm_rings_once_per_alert_and_remembers_mute(blank):
    out = blank.evaluate("""async () => {
      const { Alarm, NOTIFICATION_TITLE } = await import("/static/sound.js");
      const shown = [];
      window.Notification = class {
        static permission = "granted";
        constructor(title, options) { shown.push({ title, ...options }); }
      };
      const data = {};
      const storage = { getItem: (k) => (k in data ? data[k] : null), setItem: (k, v) => { data[k] = String(v); } };
      const alarm = new Alarm(storage);
      const red = { properties: { identifier: "citytwin.bund.crowd.1", level: 4, place_name: "Chen Yi Square",
        headline: "Red crowd density warning, Chen Yi Square", headline_zh: "陈毅广场人群密度红色预警" } };
      const rang = [alarm.ring(red), alarm.ring(red)];
      const loud = { beeps: alarm.beeps, notified: alarm.notified, muted: alarm.muted };
      alarm.setMuted(true);
      const quiet = new Alarm(storage);  // a reload: the switch is remembered
      const other = { properties: { identifier: "citytwin.bund.flood.2", level: 4, area_desc: "外滩隧道北口" } };
      const rangQuiet = quiet.ring(other);
      const real = new Alarm();  // the browser's localStorage
      real.setMuted(true);
      const stored = localStorage.getItem("citytwin.muted");
      real.setMuted(false);
      const fail = () => { throw new Error("storage blocked"); };
      const broken = new Alarm({ getItem: fail, setItem: fail });
      broken.setMuted(true);
      return { rang, loud, data, quietMuted: quiet.muted, rangQuiet, quietBeeps: quiet.beeps, shown,
               title: NOTIFICATION_TITLE, stored, after: localStorage.getItem("citytwin.muted"), broken: broken.muted,
               permission: await alarm.askPermission() };
    }""")
    assert out["rang"] == [True, False]
    assert out["loud"] == {"beeps": 1, "notified": 1, "muted": False}
    assert out["data"] == {"citytwin.muted": "1"} and out["quietMuted"] is True
    assert out["rangQuiet"] is True and out["quietBeeps"] == 0  # muted: no beep, the notification still shows
    assert out["title"] == "红色预警 · Red alert"
    first, second = out["shown"]
    assert first["title"] == "红色预警 · Red alert" and first["tag"] == "citytwin-red-citytwin.bund.crowd.1"
    assert first["body"] == "Chen Yi Square\n陈毅广场人群密度红色预警\nRed crowd density warning, Chen Yi Square"
    assert first["silent"] is False
    assert second["body"] == "外滩隧道北口" and second["silent"] is True
    assert (out["stored"], out["after"], out["broken"]) == ("1", "0", True)
    assert out["permission"] == "granted"


# ---------------------------------------------------------------- history.js
HISTORY = {
    "since": T0 - 3 * 3600, "until": T0,
    "alerts": [
        {"identifier": "citytwin.bund.flood.2", "hazard": "flood", "level": 3, "state": "cancelled",
         "raised_at": T0 - 3600, "cancelled_at": T0 - 1800, "place": "flood:point:water-03",
         "place_name": "Bund Tunnel north portal", "areaDesc": "外滩隧道北口 Bund Tunnel north portal",
         "timeline": [
             {"t": T0 - 3600, "kind": "raised", "level": 2, "actor": None, "text": "Yellow waterlogging warning"},
             {"t": T0 - 3000, "kind": "level", "level": 3, "actor": None, "text": "yellow → orange"},
             {"t": T0 - 2900, "kind": "acknowledged", "level": 3, "actor": "Wang Fang", "text": None},
             {"t": T0 - 1800, "kind": "cancelled", "level": 3, "actor": None, "text": "cleared"},
         ]},
        {"identifier": "citytwin.bund.crowd.1", "hazard": "crowd", "level": 4, "state": "active",
         "raised_at": T0 - 600, "cancelled_at": None, "place": "crowd:area:chen-yi-square",
         "place_name": "Chen Yi Square", "areaDesc": "陈毅广场 Chen Yi Square",
         "timeline": [
             {"t": T0 - 600, "kind": "raised", "level": 4, "actor": None, "text": None},
             {"t": T0 - 240, "kind": "on_scene", "level": 4, "actor": "unit-police-01", "text": None},
         ]},
    ],
}


def test_the_history_lists_alerts_newest_first_with_their_timeline(blank):
    blank.evaluate("""async (body) => {
      const { renderHistory } = await import("/static/history.js");
      window.selected = [];
      renderHistory(document.getElementById("hist"), body, { onSelect: (id) => window.selected.push(id) });
    }""", HISTORY)
    rows = blank.evaluate("""() => [...document.querySelectorAll("#hist .hist-item")].map((li) => ({
      id: li.dataset.id, cls: li.className, chip: li.querySelector(".hist-row .hist-chip").textContent,
      chipColour: getComputedStyle(li.querySelector(".hist-row .hist-chip")).backgroundColor,
      hazard: li.querySelector(".hist-hazard").textContent, place: li.querySelector(".hist-place").textContent,
      times: li.querySelector(".hist-times").textContent,
      events: [...li.querySelectorAll(".hist-ev")].map((e) => e.textContent),
      open: li.querySelector("details").open }))""")
    crowd, flood = rows
    assert crowd["id"] == "citytwin.bund.crowd.1" and flood["id"] == "citytwin.bund.flood.2"  # newest first
    assert crowd["chip"] == "red · 红" and crowd["chipColour"] == "rgb(220, 24, 24)"  # --level-4
    assert crowd["hazard"] == "Crowd · 人群" and crowd["place"] == "Chen Yi Square"
    assert crowd["times"] == "raised · 发布 21:50 · active · 进行中 · 10 min"
    assert crowd["events"] == ["21:50:00 raised · 发布 red · 红", "21:56:00 on scene · 到场 red · 红 unit-police-01"]
    assert "hist-active" in crowd["cls"] and "level-4" in crowd["cls"]
    assert flood["chip"] == "orange · 橙" and flood["hazard"] == "Flood · 内涝"
    assert flood["times"] == "raised · 发布 21:00 · cancelled · 解除 21:30 · 30 min"
    assert flood["events"] == [
        "21:00:00 raised · 发布 yellow · 黄 Yellow waterlogging warning",
        "21:10:00 level · 级别变化 orange · 橙 yellow → orange",
        "21:11:40 acknowledged · 确认 orange · 橙 Wang Fang",
        "21:30:00 cancelled · 解除 orange · 橙 cleared",
    ]
    assert not flood["open"]

    # the timeline opens without selecting; a click on the row selects, as does Enter on it
    blank.click('#hist .hist-item[data-id="citytwin.bund.flood.2"] summary')
    assert blank.evaluate("() => [document.querySelectorAll('#hist details')[1].open, window.selected.length]") == \
        [True, 0]
    blank.click('#hist .hist-item[data-id="citytwin.bund.flood.2"] .hist-place')
    blank.focus('#hist .hist-item[data-id="citytwin.bund.crowd.1"] .hist-row')
    blank.keyboard.press("Enter")
    assert blank.evaluate("() => window.selected") == ["citytwin.bund.flood.2", "citytwin.bund.crowd.1"]

    # one language, the empty period, a truncated list; a second render keeps one listener
    out = blank.evaluate("""async (body) => {
      const { renderHistory } = await import("/static/history.js");
      const el = document.getElementById("hist");
      renderHistory(el, body, { lang: "zh", onSelect: (id) => window.selected.push("zh:" + id) });
      const zh = el.querySelector(".hist-times").textContent;
      el.querySelector(".hist-row").click();
      renderHistory(el, { ...body, alerts: body.alerts.slice(1), truncated: true }, { lang: "en" });
      const truncated = el.querySelector(".hist-truncated").textContent;
      renderHistory(el, { since: body.since, until: body.until, alerts: [] }, { lang: "en" });
      return { zh, truncated, empty: el.textContent, selected: window.selected };
    }""", HISTORY)
    assert out["zh"] == "发布 21:50 · 进行中 · 10 min"
    assert out["truncated"] == "Only the newest alerts are listed (1)"
    assert out["empty"] == "No alerts in this period (19:00 – 22:00)"
    assert out["selected"][2:] == ["zh:citytwin.bund.crowd.1"]


def test_a_refresh_keeps_the_open_timelines_and_the_scroll_position(blank):
    """The page renders the history again every few seconds: a timeline the operator opened stays open (by alert
    id, wherever its row moves), and the list stays where it was scrolled."""
    many = {**HISTORY, "alerts": [{**HISTORY["alerts"][1], "identifier": f"citytwin.bund.crowd.{k}",
                                   "raised_at": T0 - 600 - 60 * k} for k in range(30)]}
    out = blank.evaluate("""async (body) => {
      const { renderHistory } = await import("/static/history.js");
      const el = document.getElementById("hist");
      el.style.height = "120px";
      el.style.overflowY = "auto";
      renderHistory(el, body, {});
      el.querySelector('.hist-item[data-id="citytwin.bund.crowd.7"] details').open = true;
      el.scrollTop = 250;
      const before = el.scrollTop;
      // the refresh: a new alert on top (every row moves down one), the same ones after it
      const newer = { ...body.alerts[0], identifier: "citytwin.bund.crowd.new", raised_at: body.until };
      renderHistory(el, { ...body, alerts: [newer, ...body.alerts] }, {});
      const open = [...el.querySelectorAll(".hist-item")].filter((li) => li.querySelector("details").open)
        .map((li) => li.dataset.id);
      return { before, after: el.scrollTop, open, rows: el.querySelectorAll(".hist-item").length };
    }""", many)
    assert out["rows"] == 31 and out["open"] == ["citytwin.bund.crowd.7"]
    assert out["before"] == 250 and out["after"] == 250


# ---------------------------------------------------------------- vitals.js
def test_a_tile_without_a_value_says_no_data(blank):
    """Water with no gauge reporting (value null, level -1), and people and traffic without data: the value "–",
    the line "no data · 无数据" (not "0 points"), no trend arrow, the tile grey; a tile with a value is unchanged."""
    out = blank.evaluate("""async () => {
      const { VitalsPanel } = await import("/static/vitals.js");
      const root = document.createElement("div");
      root.innerHTML = '<button id="drill-city"></button><select id="drill-district"></select>' +
        '<select id="drill-street"></select><select id="drill-unit"></select><ul id="vital-tiles"></ul>';
      document.body.append(root);
      const panel = new VitalsPanel(root, { onFilter() {}, onNode() {} });
      const none = (unit, detail) => ({ value: null, unit, level: -1, trend: null, trend_arrow: "→", detail });
      const body = (water) => ({ t: 1, nodes: [{ id: "city", indicators: {
        people: none("person", { cells_with_data: 0 }), traffic: none("1", { slow_roads: 0, links_with_data: 0 }),
        water, alerts: { value: 2, unit: "1", level: 4, trend: null, trend_arrow: "", detail: { by_level: { 4: 2 } } },
      } }] });
      const read = () => Object.fromEntries(["people", "water", "traffic", "alerts"].map((n) => {
        const li = root.querySelector(`li[data-name="${n}"]`);
        return [n, [li.querySelector(".vital-value").textContent, li.querySelector(".vital-unit").textContent,
                    li.querySelector(".vital-detail").textContent, li.querySelector(".vital-trend").textContent,
                    li.dataset.level, li.classList.contains("lv-none")]];
      }));
      panel.render(body(none("m", { waterlogged_points: 0, waterlogged_m2: 0 })));
      const empty = read();
      panel.render(body({ value: 0.31, unit: "m", level: 3, trend: 0.3, trend_arrow: "↑",
                          detail: { waterlogged_points: 2, waterlogged_m2: 400 } }));
      const wet = read().water;
      panel.render(body(none("m", { waterlogged_points: 0, waterlogged_m2: 0 })));
      return { empty, wet, dry: read().water };
    }""")
    for name in ("people", "water", "traffic"):
        assert out["empty"][name] == ["–", "", "no data · 无数据", "", "-1", True], name
    assert out["empty"]["alerts"][:2] == ["2", ""] and out["empty"]["alerts"][4] == "4"
    assert out["wet"] == ["0.31", "m", "2 points · 积水点", "↑", "3", False]
    assert out["dry"] == out["empty"]["water"], "and back to no data"


# ---------------------------------------------------------------- building.js
RECORD = {"id": "way/123", "name": "和平饭店", "name_en": "Fairmont Peace Hotel", "use": "hotel", "floors": 12,
          "height_m": 77, "floor_area_m2": 54321.4, "occupancy": 812.6, "cells": 3, "centroid": [121.4903, 31.2397],
          "risk": {"level": 3, "crowd": {"level": 3, "density_max": 2.345}, "flood": {"level": 0, "depth_max_m": 0.02},
                   "traffic": {"level": -1}}, "t": T0}


def test_the_building_record_reads_with_units_and_its_risk(blank):
    out = blank.evaluate("""async ([record]) => {
      const { renderBuilding } = await import("/static/building.js");
      const el = document.getElementById("bldg");
      const read = () => ({
        name: el.querySelector(".bldg-name").textContent, en: el.querySelector(".bldg-name-en")?.textContent ?? null,
        facts: [...el.querySelectorAll(".bldg-facts tr")].map((tr) =>
          [tr.cells[0].textContent, tr.cells[1].textContent]),
        risk: [...el.querySelectorAll(".bldg-risk tr")].map((tr) =>
          [tr.cells[0].textContent, tr.querySelector(".bldg-chip").textContent,
           tr.querySelector(".bldg-chip").className.split(" ")[1], tr.querySelector(".bldg-figure").textContent]),
        time: el.querySelector(".bldg-time").textContent,
      });
      renderBuilding(el, record);
      const full = read();
      renderBuilding(el, { ...record, cells: [[1, 2], [1, 3]], height_m: 12.46 });
      const list = read().facts;
      renderBuilding(el, { id: "way/9" });
      const bare = read();
      renderBuilding(el, null);
      return { full, list, bare, none: el.textContent };
    }""", [RECORD])
    full = out["full"]
    assert (full["name"], full["en"]) == ("和平饭店", "Fairmont Peace Hotel")
    assert full["facts"] == [["Use · 用途", "hotel · 酒店"], ["Floors · 层数", "12"], ["Height · 高度", "77 m"],
                             ["Floor area · 建筑面积", "54,321 m²"],
                             ["Occupancy (estimate) · 估计人数", "≈ 813 persons · 人"], ["Cells · 网格单元", "3"]]
    assert full["risk"] == [["Overall · 综合", "orange · 橙", "level-3", ""],
                            ["Crowd · 人群", "orange · 橙", "level-3", "max 2.35 person/m²"],
                            ["Flood · 内涝", "none · 无", "level-0", "max 0.02 m"],
                            ["Traffic · 交通", "no data · 无数据", "level-none", ""]]
    assert full["time"] == "as of · 截至 22:00:00"
    assert dict(out["list"])["Cells · 网格单元"] == "2" and dict(out["list"])["Height · 高度"] == "12.5 m"
    bare = out["bare"]
    assert bare["name"] == "Building · 建筑 way/9" and bare["en"] is None
    assert [v for _, v in bare["facts"]] == ["–"] * 6
    assert [r[1] for r in bare["risk"]] == ["no data · 无数据"] * 4 and bare["time"] == ""
    assert out["none"] == "No building record · 无建筑信息"


def test_a_hazard_without_data_shows_no_figure(blank):
    """Flood level -1 (no gauge data in the building's cells): no depth, even the 0.00 m the record carries."""
    rows = blank.evaluate("""async ([record]) => {
      const { renderBuilding } = await import("/static/building.js");
      const el = document.getElementById("bldg");
      renderBuilding(el, record);
      return [...el.querySelectorAll(".bldg-risk tr")].map((tr) =>
        [tr.cells[0].textContent, tr.querySelector(".bldg-chip").textContent,
         tr.querySelector(".bldg-figure").textContent]);
    }""", [{**RECORD, "risk": {"level": 3, "crowd": {"level": -1, "density_max": 0.0},
                                "flood": {"level": -1, "depth_max_m": 0.0}, "traffic": {"level": 0}}}])
    assert rows == [["Overall · 综合", "orange · 橙", ""], ["Crowd · 人群", "no data · 无数据", ""],
                    ["Flood · 内涝", "no data · 无数据", ""], ["Traffic · 交通", "none · 无", ""]]
