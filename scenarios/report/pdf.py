"""The report as an A4 PDF (matplotlib ``PdfPages``, no other dependency): page 1 the summary (question, answer,
the three largest effects, warnings, the worst places), then the charts and maps two to a page."""

from __future__ import annotations

import textwrap
from pathlib import Path

from scenarios.report.answer import effects, key_numbers, named_places
from scenarios.report.fmt import fmt_people, place_name
from scenarios.report.maps import fonts, quiet_fonts
from scenarios.report.page import ReportPage

A4_IN = (8.27, 11.69)
WRAP = 100
"""Characters per line of body text at 9.5 pt on A4 with 15 mm margins."""


class _Writer:
    """Lines of text down an A4 page (figure coordinates, from the top)."""

    def __init__(self, fig) -> None:
        self.fig, self.y = fig, 0.955

    def line(self, text: str, size: float = 9.5, weight: str = "normal", gap: float = 1.45, colour: str = "black",
             wrap: int | None = None, family: str | None = None) -> None:
        """``text`` wrapped to the page's width (`WRAP` characters at 9.5 pt, fewer when larger or bold)."""
        width = wrap or int(WRAP * 9.5 / size * (0.85 if weight == "bold" else 1.0))
        for part in textwrap.wrap(text, width) or [""]:
            self.fig.text(0.07, self.y, part, fontsize=size, fontweight=weight, color=colour, va="top",
                          **({"family": family} if family else {}))
            self.y -= size * gap / 72.0 / A4_IN[1]

    def space(self, pt: float = 6.0) -> None:
        self.y -= pt / 72.0 / A4_IN[1]


def summary_page(p: ReportPage, plt):
    """Page 1: the summary as text."""
    fig = plt.figure(figsize=A4_IN)
    w = _Writer(fig)
    s = p.summary
    w.line(p.name, 17, "bold")
    w.line(f"Scenario report · {p.period} · alerts are CAP status Exercise", 8.5, colour="#555")
    w.space()
    question = s.get("question") or s.get("description") or ""
    if question:
        w.line(("Question: " if s.get("question") else "Scenario: ") + question, 10.5)
        w.space()
    for sentence in p.answer:
        w.line(sentence, 11.5, "bold")
    for warning in s.get("warnings") or []:
        w.line("Warning: " + str(warning), 9, colour="#8a6d00")
    w.space(8)
    w.line("The largest effects", 12, "bold")
    for i, row in enumerate(effects(s.get("places") or []), 1):
        zh = f"  {row['name_zh']}" if row.get("name_zh") and row["name_zh"] != row.get("name") else ""
        levels = ", ".join(f"{h} {c}" for h, c in row.get("top_level", {}).items() if c != "none")
        w.line(f"{i}. {place_name(row)}{zh} ({row.get('kind')}): {levels}", 10, "bold")
        w.line("; ".join(f"{k} {v}" for k, v in key_numbers(row)), 9.5)
    w.space(8)
    w.line("The worst places (all in places.csv)", 12, "bold")
    places = s.get("places") or []
    keep = named_places(places)
    for row in [r for r in places if r in keep][:15]:
        w.line(f"{place_name(row)[:44]:44s} {row['peak_depth_m']:5.2f} m {row['peak_density']:4.1f} person/m2 "
               f"{fmt_people(row.get('people_exposed')):>8s} exposed", 7.5, wrap=140, family="DejaVu Sans Mono")
    return fig


def figure_page(files: list[tuple[str, str]], folder: Path, plt):
    """Up to two figures (PNG files of ``folder``) on one A4 page, with their captions."""
    fig = plt.figure(figsize=A4_IN)
    for k, (name, caption) in enumerate(files[:2]):
        ax = fig.add_axes((0.06, 0.52 - 0.47 * k, 0.88, 0.43))
        ax.imshow(plt.imread(folder / name))
        ax.set_axis_off()
        fig.text(0.06, 0.505 - 0.47 * k, caption, fontsize=8.5, va="top", color="#444")
    return fig


def write_pdf(p: ReportPage, folder: Path, path: Path) -> None:
    """The report as an A4 PDF at ``path``: the summary page, then the charts and maps (files of ``folder``)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    figs = [*p.charts, *p.maps]
    with plt.rc_context({"font.family": fonts(), "pdf.fonttype": 42}), quiet_fonts(), PdfPages(path) as pdf:
        for fig in [summary_page(p, plt)] + [figure_page(figs[i:i + 2], folder, plt) for i in range(0, len(figs), 2)]:
            pdf.savefig(fig)
            plt.close(fig)
