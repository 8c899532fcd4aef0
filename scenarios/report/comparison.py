"""The pages of ``twin scenario compare`` (``compare.html``) and ``twin scenario ensemble`` (``ensemble.html``), in
the reports' style (`scenarios.report.page`): the answer first, then the tables and the maps, named places only.

Compare: what B changed against A, the three largest effects (`scenarios.compare`), every intervention with its
changes or "no measurable change there", the headline metrics, every place that changed, ranked, and the difference
maps. Ensemble: the members, the probability per named place (`scenarios.ensemble.place_probabilities`) and the
exceedance maps.
"""

from __future__ import annotations

import html

import numpy as np
import xarray as xr

from scenarios.report.fmt import fmt_depth, fmt_int, fmt_signed, fmt_value, place_html
from scenarios.report.maps import add_scale_bar, base_map, extent, label_places, origin, value_map
from scenarios.report.page import page_html, table

e = html.escape
EFFECT_ROWS = 25
"""Places listed in the compare page's table of effects (all are in compare.json)."""
ENSEMBLE_PLACE_ROWS = 20
VERDICT_COLOUR = {"worse": "red", "better": "blue", "mixed": "orange", "unchanged": "none"}


def _change(c: dict) -> str:
    diff = float(c["diff"])
    return (f"{e(str(c['metric']))} {fmt_value(c['a'])} → {fmt_value(c['b'])} {e(str(c['unit']))} "
            f"({fmt_signed(diff, '−')})")


def _verdict(v: str) -> str:
    return f'<span class="lv lv-{VERDICT_COLOUR.get(v, "none")}">{e(v)}</span>'


def _card(rank: int, effect: dict) -> str:
    changes = "".join(f"<li>{_change(c)}</li>" for c in effect["changes"][:3])
    return (f'<div class="effect"><h3><span class="rank">{rank}</span>{place_html(effect)}</h3>'
            f'<div class="kind">{e(str(effect["kind"]))} {_verdict(str(effect["verdict"]))}</div>'
            f'<ul style="margin:4px 0;padding-left:18px">{changes}</ul></div>')


def compare_html(result: dict, maps: list[str]) -> str:
    """The compare page of a `scenarios.compare.compare` result."""
    top = [x for x in result["effects"] if "same_as" not in x][:3]
    question = f'<p class="question"><b>Question:</b> {e(result["question"])}</p>' if result.get("question") else ""
    interventions = "".join(f"<li>{e(i['text'])}</li>" for i in result["interventions"])
    summary = (f'<section class="summary"><h1>{e(result["b"])} against {e(result["a"])}</h1>'
               f'<p class="meta">Scenario comparison · B − A · A = {e(result["a"])} (the baseline), '
               f'B = {e(result["b"])}</p>{question}<p class="answer">{e(result["answer"])}</p>'
               + (f'<div class="effects">{"".join(_card(i + 1, x) for i, x in enumerate(top))}</div>' if top else "")
               + (f"<h2>Interventions</h2><ul>{interventions}</ul>" if interventions else "") + "</section>")
    head = table(["metric", "A", "B", "B − A"],
                 [[e(m["metric"]), fmt_value(m["a"]), fmt_value(m["b"]), fmt_value(m["diff"]) if m["diff"] else "0"]
                  for m in result["metrics"]], {1, 2, 3})
    rows = [[str(k), place_html(x), e(str(x["kind"])), _verdict(str(x["verdict"])),
             "; ".join(_change(c) for c in x["changes"][:3]),
             e(f"same as {x['same_as']}") if "same_as" in x else ""]
            for k, x in enumerate(result["effects"][:EFFECT_ROWS], 1)]
    effects = table(["#", "place", "kind", "", "largest changes", ""], rows, {0}) if rows else \
        "<p>No place changed measurably.</p>"
    figs = "".join(f'<figure><img src="{e(m)}" alt="{e(m)}"><figcaption>{e(m)}</figcaption></figure>' for m in maps)
    body = (summary + f"<h2>Headline numbers</h2>{head}"
            f"<h2>Effects by place ({len(result['effects'])} of {result['places']} places changed measurably; "
            f"all in compare.json)</h2>{effects}<h2>Maps</h2><div class=figs>{figs}</div>")
    return page_html(f"{result['b']} against {result['a']}", body)


def difference_map(static: xr.Dataset, diff: np.ndarray, plt, effects: list[dict], label: str):
    """B − A of a peak layer: red where B is worse (higher), blue where better, a colour scale that covers the
    largest change, the places with the largest effects labelled, a scale bar."""
    span = max(float(np.nanmax(np.abs(diff), initial=0.0)), 0.01)
    fig, ax = base_map(static, plt)
    shown = np.ma.masked_where(np.abs(np.nan_to_num(diff)) < 1e-3, diff)
    im = ax.imshow(shown, extent=extent(static), origin=origin(static), cmap="RdBu_r", vmin=-span, vmax=span,
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8, label=label, pad=0.02)
    label_places(ax, [x for x in effects if "same_as" not in x], static, lambda x: str(x["verdict"]))
    add_scale_bar(ax, static)
    ax.set_title(label)
    return fig


def ensemble_html(summary: dict, maps: list[str], name: str) -> str:
    """The ensemble page: members, probability per named place, exceedance maps."""
    places = summary.get("places", [])
    risky = [p for p in places if p["p_red"] > 0 or p["p_depth_over_0.15m"] > 0 or p["p_density_over_2"] > 0]
    n = len(summary["members"])
    answer = (f"In {n} members, the most likely red place is {risky[0]['name']} "
              f"({risky[0]['p_red']:.0%} of members red there; water over 0.15 m in "
              f"{risky[0]['p_depth_over_0.15m']:.0%})." if risky else
              f"In {n} members, no place passes a yellow threshold.")
    members = table(["values", "alerts", "peak depth", "peak density", "wall"],
                    [[e(", ".join(f"{k}={v}" for k, v in m["values"].items())), fmt_int(m["alerts"]),
                      fmt_depth(m["peak_depth_m"]), f"{m['peak_density']:.1f}", f"{m['wall_s']:.0f} s"]
                     for m in summary["members"]], {1, 2, 3, 4})
    rows = [[place_html(p), e(str(p["kind"])), f"{p['p_red']:.0%}", f"{p['p_depth_over_0.15m']:.0%}",
             f"{p['p_depth_over_0.5m']:.0%}", f"{p['p_density_over_4']:.0%}", fmt_depth(p["median_peak_depth_m"]),
             fmt_depth(p["max_peak_depth_m"])] for p in risky[:ENSEMBLE_PLACE_ROWS]]
    table_ = table(["place", "kind", "P(red)", "P(depth > 0.15 m)", "P(depth > 0.5 m)", "P(density > 4)",
                    "median peak depth", "largest peak depth"], rows, {2, 3, 4, 5, 6, 7}) if rows else ""
    figs = "".join(f'<figure><img src="{e(m)}" alt="{e(m)}"><figcaption>{e(m)}</figcaption></figure>' for m in maps)
    body = (f'<section class="summary"><h1>{e(name)}: ensemble of {n}</h1><p class="answer">{e(answer)}</p>'
            f"<h2>Probability per place (all in ensemble_places.csv)</h2>{table_}</section>"
            f"<h2>Members</h2>{members}<h2>Exceedance maps</h2><div class=figs>{figs}</div>")
    return page_html(f"{name}: ensemble", body)


def exceedance_maps(ds: xr.Dataset, static: xr.Dataset, places: list[dict], out, plt) -> list[str]:
    """Maps of the share of members over 0.15 m of water and at red, the likeliest places labelled."""
    from scenarios.report.maps import save

    names = []
    for var, title, key in (("p_depth_over_0.15m", "share of members with water over 0.15 m", "p_depth_over_0.15m"),
                            ("p_red", "share of members at red (any hazard)", "p_red")):
        rows = [p for p in sorted(places, key=lambda p: -p[key]) if p[key] > 0]
        fig = value_map(static, ds[var].values, plt, title=title, unit="share of members", cmap="YlOrRd",
                        thresholds=(), rows=rows, value=lambda p, k=key: f"{p[k]:.0%}", floor=1e-6,
                        name=f"{var}.png")
        names.append(save(fig, out, plt))
    return names
