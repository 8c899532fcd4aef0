"""A scenario run's outputs and report (`scenarios.report.outputs.write_outputs`), in parts:

- `outputs`: the files of a run folder (layers, alerts, place metrics, summary) and the report's assembly;
- `answer`: the answer to the scenario's question and the largest effects, from the numbers, by place name;
- `alerts`: the alert timeline collapsed by place, and the open alerts by level over time;
- `charts`: depth, density, open alerts and people exposed over time (matplotlib);
- `maps`: peak maps with named places, a scale bar and covering colour scales (reusable: `base_map`,
  `add_scale_bar`, `label_places`, `covering_scale`);
- `page`: the HTML page and its print style (reusable: `page_html`, `CSS`); `pdf`: the A4 PDF;
- `comparison`: the pages of ``twin scenario compare`` and ``twin scenario ensemble``;
- `fmt`: numbers as a planner reads them (`fmt_int`, `fmt_people`).
"""

from scenarios.report.fmt import fmt_int, fmt_people
from scenarios.report.maps import add_scale_bar, base_map, covering_scale, extent, label_places, origin
from scenarios.report.outputs import timeline_geojson, timeline_rows, write_csv, write_outputs, write_place_metrics
from scenarios.report.page import CSS, page_html

__all__ = ["CSS", "add_scale_bar", "base_map", "covering_scale", "extent", "fmt_int", "fmt_people", "label_places",
           "origin", "page_html", "timeline_geojson", "timeline_rows", "write_csv", "write_outputs",
           "write_place_metrics"]
