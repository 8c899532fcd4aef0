"""The report page: one HTML document without scripts or external resources, in a style shared by the scenario,
compare and ensemble pages (`page_html`, `CSS`), print-ready (A4: the summary on page 1, figures and table rows
never cut).

The first screen (1366 x 768 px, and the first printed page) holds the summary: the title, the question, the answer
(`scenarios.report.answer`), the three places with the largest effects and the run's warnings.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from scenarios.report.alerts import AlertPlace
from scenarios.report.answer import effects, key_numbers, named_places, wall_rows
from scenarios.report.fmt import DASH, fmt_density, fmt_depth, fmt_int, fmt_minutes, fmt_people, fmt_speed, place_html

e = html.escape
PLACE_TABLE_ROWS = 15

CSS = """
:root{--blue:#1e64dc;--yellow:#ffd700;--orange:#ff8000;--red:#dc1818;--ink:#1b1b1f;--muted:#5b5b66;--line:#dcdce2}
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,"Noto Sans","WenQuanYi Micro Hei",sans-serif;color:var(--ink);margin:0 auto;
  padding:14px 22px;max-width:1240px}
h1{font-size:22px;margin:0 0 2px}h2{font-size:17px;margin:22px 0 8px;border-bottom:2px solid var(--line)}
.meta{color:var(--muted);font-size:12.5px;margin:0 0 8px}
.question{font-size:15px;margin:6px 0}.question b{color:var(--muted);font-weight:600}
.answer{font-size:17px;line-height:1.45;background:#f3f5fa;border-left:5px solid var(--blue);padding:9px 14px;
  margin:8px 0}
.warnings{background:#fff7d6;border:1px solid #e6c200;padding:6px 12px;margin:8px 0;font-size:13px}
.warnings ul{margin:2px 0;padding-left:18px}
.effects{display:grid;grid-template-columns:repeat(3,1fr);gap:10px;margin:10px 0}
.effect{border:1px solid var(--line);border-radius:6px;padding:8px 11px;break-inside:avoid}
.effect h3{font-size:15px;margin:0 0 2px}.effect .kind{color:var(--muted);font-size:12px}
.effect dl{display:grid;grid-template-columns:auto 1fr;gap:1px 10px;margin:6px 0 0;font-size:13px}
.effect dt{color:var(--muted)}.effect dd{margin:0;font-variant-numeric:tabular-nums}
.rank{display:inline-block;width:20px;height:20px;border-radius:10px;background:var(--ink);color:#fff;
  text-align:center;font-size:12px;line-height:20px;margin-right:4px}
.zh{color:var(--muted);font-weight:normal}
.lv{display:inline-block;padding:0 6px;border-radius:3px;font-size:11.5px;margin:1px 2px 1px 0;color:#000}
.lv-blue{background:var(--blue);color:#fff}.lv-yellow{background:var(--yellow)}.lv-orange{background:var(--orange)}
.lv-red{background:var(--red);color:#fff}.lv-none{background:#eee}
nav.toc{font-size:13px;margin:6px 0}nav.toc a{margin-right:12px}
table{border-collapse:collapse;width:100%;font-size:12.5px;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid var(--line);padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f6f6f8}td.n,th.n{text-align:right}
.figs{display:grid;grid-template-columns:repeat(2,1fr);gap:12px}
figure{margin:0;break-inside:avoid}figure img{width:100%;height:auto;border:1px solid var(--line)}
figcaption{font-size:12px;color:var(--muted)}
.note{color:var(--muted);font-size:12.5px}
@media (max-width:900px){.effects,.figs{grid-template-columns:1fr}}
@page{size:A4;margin:11mm 10mm}
@media print{
  body{padding:0;max-width:none;font-size:11.5px}
  nav.toc{display:none}
  .summary{break-after:page}
  .answer{font-size:14px}
  .effects{gap:6px;grid-template-columns:repeat(3,1fr)}.effect{padding:6px 8px}.effect dl{font-size:11.5px}
  h2{break-after:avoid}
  .figs{display:block}figure{margin:0 0 8px;page-break-inside:avoid}figure img{max-height:120mm;width:auto;
    max-width:100%}
  table{font-size:10.5px}thead{display:table-header-group}tr{break-inside:avoid}
  a{color:inherit;text-decoration:none}
  .lv,.answer,.warnings,th{-webkit-print-color-adjust:exact;print-color-adjust:exact}
}
"""


def page_html(title: str, body_html: str, lang: str = "en") -> str:
    """A whole HTML document in the reports' style (``CSS``): no scripts, no external resources."""
    return (f'<!doctype html><html lang="{e(lang)}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{e(title)}</title>'
            f"<style>{CSS}</style></head><body>{body_html}</body></html>")


def level_badge(hazard: str, colour: str) -> str:
    """A coloured badge ``flood red``."""
    return f'<span class="lv lv-{e(colour)}">{e(hazard.replace("_", " "))} {e(colour)}</span>'


def table(head: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    """An HTML table of already-escaped cells; columns in ``numeric`` right-aligned."""
    th = "".join(f'<th{" class=n" if i in numeric else ""}>{h}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{c}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


@dataclass
class ReportPage:
    """What the report page shows (built by `scenarios.report.outputs.write_outputs`)."""

    name: str
    summary: dict
    answer: list[str]
    period: str
    charts: list[tuple[str, str]] = field(default_factory=list)
    """(file, caption) of each chart."""
    maps: list[tuple[str, str]] = field(default_factory=list)
    alert_places: list[AlertPlace] = field(default_factory=list)
    alert_events: int = 0
    district: list[tuple[str, str]] = field(default_factory=list)
    """(label, value) of the whole district's headline numbers."""
    timeline: list[tuple[str, str]] = field(default_factory=list)
    """(local time, what the scenario does)."""
    files: list[str] = field(default_factory=list)


def effect_card(rank: int, row: dict) -> str:
    """One of the three largest effects: name, kind, levels reached, key numbers."""
    badges = "".join(level_badge(h, c) for h, c in row.get("top_level", {}).items() if c not in ("none",))
    numbers = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in key_numbers(row))
    return (f'<div class="effect"><h3><span class="rank">{rank}</span>{place_html(row)}</h3>'
            f'<div class="kind">{e(str(row.get("kind", "")))}</div><div>{badges}</div><dl>{numbers}</dl></div>')


def summary_section(p: ReportPage) -> str:
    """The first screen: title, question, answer, the three largest effects, warnings."""
    s = p.summary
    question = s.get("question") or s.get("description") or ""
    label = "Question" if s.get("question") else "Scenario"
    warn = s.get("warnings") or []
    warnings = ("<div class=warnings><b>Warnings</b><ul>" + "".join(f"<li>{e(str(w))}</li>" for w in warn)
                + "</ul></div>") if warn else ""
    cards = "".join(effect_card(i + 1, r) for i, r in enumerate(effects(s.get("places") or [])))
    toc = " ".join(f'<a href="#{a}">{t}</a>' for a, t in (("charts", "charts"), ("maps", "maps"),
                                                           ("places", "places"), ("alerts", "alerts by place"),
                                                           ("district", "whole district and files")))
    return (f'<section class="summary" id="summary"><h1>{e(p.name)}</h1>'
            f'<p class="meta">Scenario report · {e(p.period)} · the alerts are CAP status Exercise: what the live '
            f"twin would have raised</p>"
            + (f'<p class="question"><b>{label}:</b> {e(question)}</p>' if question else "")
            + f'<p class="answer" id="answer">{e(" ".join(p.answer))}</p>{warnings}'
            + (f'<h2 style="margin-top:10px">The largest effects</h2><div class="effects">{cards}</div>'
               if cards else "")
            + f'<nav class="toc">{toc}</nav></section>')


def figures_section(anchor: str, title: str, figs: list[tuple[str, str]], empty: str) -> str:
    items = "".join(f'<figure><img src="{e(f)}" alt="{e(c)}"><figcaption>{e(c)}</figcaption></figure>'
                    for f, c in figs)
    return f'<section id="{anchor}"><h2>{e(title)}</h2>' + (f'<div class="figs">{items}</div>' if items else
                                                             f'<p class="note">{e(empty)}</p>') + "</section>"


def _minutes_red(row: dict) -> str:
    reds = [(h, m.get("red", 0.0)) for h, m in row.get("minutes_at_or_above", {}).items() if m.get("red")]
    return ", ".join(f"{h} {fmt_minutes(v)}" for h, v in reds) or DASH


def places_section(rows: list[dict]) -> str:
    """The worst places (one per name) with their numbers; all of them are in places.csv."""
    shown = named_places(rows)
    shown = [r for r in rows if r in shown][:PLACE_TABLE_ROWS]
    body = []
    for r in shown:
        levels = "".join(level_badge(h, c) for h, c in r.get("top_level", {}).items() if c != "none") or DASH
        depth = f"{fmt_depth(r['peak_depth_m'])} {r.get('peak_depth_at') or ''}" if r.get("peak_depth_at") else DASH
        dens = (f"{fmt_density(r['peak_density'])} {r.get('peak_density_at') or ''}" if r.get("peak_density_at")
                else DASH)
        speed = (f"{fmt_speed(r['min_traffic_speed_kmh'])} {r.get('min_traffic_speed_at') or ''}"
                 if r.get("min_traffic_speed_kmh") is not None else DASH)
        body.append([place_html(r), e(str(r.get("kind", ""))), levels, e(depth), e(dens), e(speed),
                     e(_minutes_red(r)), fmt_people(r.get("people_peak")), fmt_people(r.get("people_exposed"))])
    head = ["place", "kind", "highest levels", "peak water", "peak crowd", "slowest traffic", "time at red",
            "most people", "people exposed"]
    n_all = len(rows)
    return (f'<section id="places"><h2>The {len(shown)} worst places</h2>'
            + table(head, body, {7, 8})
            + f'<p class="note">One row per name, worst first; all {fmt_int(n_all)} places (including the 500 m '
              f'grid units) with every number in <a href="places.csv">places.csv</a>, their series over time in '
              f'<a href="places.nc">places.nc</a>. People exposed: the most people at once in the place\'s cells where '
              f"water or the crowd is orange or red.</p></section>")


def wall_section(rows: list[dict]) -> str:
    """The flood wall's sections (a run with a river): crest, when water comes over, peak discharge, volume,
    minutes, and the river's peak; empty without a river."""
    walls = wall_rows(rows)
    if not walls:
        return ""
    body = []
    for r in walls:
        over = float(r.get("overtopping_volume_m3") or 0.0) > 0.5
        crest = f"{float(r['crest_m']):.2f} m" + (f" (was {float(r['crest_was_m']):.2f} m)" if "crest_was_m" in r
                                                  else "")
        body.append([place_html(r), e(crest), e(str(r.get("overtopping_first_at") or DASH)) if over else DASH,
                     e(f"{float(r['overtopping_peak_m3s']):.2f} m³/s at {r.get('overtopping_peak_at')}") if over
                     else DASH, fmt_int(r.get("overtopping_volume_m3")) if over else "0",
                     fmt_minutes(r.get("overtopping_minutes")) if over else DASH,
                     e(f"{float(r['river_peak_m']):.2f} m at {r.get('river_peak_at')}")
                     if r.get("river_peak_m") is not None else DASH, e(str(r.get("crest_source") or ""))])
    head = ["flood-wall section", "crest (Wusong)", "water over from", "peak discharge", "volume [m³]", "for",
            "river peak (Wusong)", "crest from"]
    return ('<section id="wall"><h2>The flood wall (防汛墙)</h2>' + table(head, body, {4})
            + '<p class="note">Water over each section: broad-crested weir flow over its crest while the river is '
              'above it (docs/science/flood.md); it lands on the cells right behind the section. Every step in '
              '<a href="wall.nc">wall.nc</a>.</p></section>')


def alerts_section(places: list[AlertPlace], n_events: int) -> str:
    """The alert timeline collapsed by hazard and place, with counts; every event is in alerts.csv."""
    body = [[e(a.hazard.replace("_", " ")), e(a.area), level_badge(a.hazard, a.level) if a.top else DASH,
             fmt_int(len(a.alerts)), fmt_int(a.counts.get("raised", 0)), fmt_int(a.counts.get("updated", 0)),
             fmt_int(a.counts.get("cancelled", 0)), e(a.first_at), e(a.last_at)] for a in places]
    head = ["hazard", "place", "highest level", "alerts", "raised", "updates", "cancelled", "first", "last"]
    content = table(head, body, {3, 4, 5, 6}) if body else '<p class="note">No alert was raised.</p>'
    return (f'<section id="alerts"><h2>Alerts by place</h2>{content}<p class="note">{fmt_int(n_events)} alert '
            f'messages at {fmt_int(len(places))} places; every message, with its Chinese and English headline, in '
            f'<a href="alerts.csv">alerts.csv</a> and with its area in <a href="alerts.geojson">alerts.geojson</a>.'
            f"</p></section>")


def district_section(p: ReportPage) -> str:
    """Whole-district numbers, what the scenario does when, the files."""
    numbers = table(["whole district", ""], [[e(k), e(v)] for k, v in p.district])
    story = "".join(f"<li><b>{e(t)}</b> {e(text)}</li>" for t, text in p.timeline)
    files = " · ".join(f'<a href="{e(f)}">{e(f)}</a>' for f in p.files)
    return (f'<section id="district"><h2>Whole district</h2>{numbers}'
            + (f"<h2>What the scenario does</h2><ul>{story}</ul>" if story else "")
            + f'<p class="note">Files: {files}. Map data {e("© OpenStreetMap contributors, ODbL 1.0")}.</p>'
              "</section>")


def report_html(p: ReportPage) -> str:
    """The whole report page."""
    places = p.summary.get("places") or []
    body = (summary_section(p)
            + figures_section("charts", "Over time", p.charts, "Nothing to chart: no water, no crowd, no alert.")
            + figures_section("maps", "Maps", p.maps, "No maps.")
            + wall_section(places) + places_section(places) + alerts_section(p.alert_places, p.alert_events)
            + district_section(p))
    return page_html(f"{p.name}: scenario report", body)

