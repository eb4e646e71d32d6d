"""The chart's points, written by render.chart_points, are what report.html.j2 wrote with one
autoescaped expression per value, character for character, whatever the labels hold."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dwatch.report.render import ChartPoint, ChartRow, chart_points, html_environment

# The loop report.html.j2 held before render.chart_points (stop 20).
TEMPLATE_LOOP = """\
  {% for row in rows %}
  {% for p in row.points %}
  <circle cx="{{ p.x }}" cy="{{ row.y }}" r="{{ p.r }}" fill="{{ '#c2410c' if row.flagged else '#3b82a6' }}" fill-opacity="0.55" stroke="{{ '#8b1020' if row.flagged else '#1e5a7a' }}" stroke-width="0.8"><title>{{ row.label }} {{ p.day }}: {{ "{:,}".format(p.records) }} records in {{ p.events }} event(s)</title></circle>
  {% endfor %}
  {% endfor %}
"""
NOW = """\
  {% for row in rows %}
{{ chart_points(row) -}}
  {% endfor %}
"""

_POINTS = st.builds(
    ChartPoint,
    x=st.floats(min_value=0, max_value=5000, allow_nan=False).map(lambda v: round(v, 1)),
    r=st.floats(min_value=0, max_value=20, allow_nan=False).map(lambda v: round(v, 1)),
    day=st.dates().map(lambda d: d.isoformat()),
    events=st.integers(min_value=0, max_value=10**12),
    records=st.integers(min_value=0, max_value=10**15),
)
_ROWS = st.builds(
    ChartRow,
    label=st.text(st.sampled_from(list("AZaz09 -&<>\"'/\\;{}%é\u2192")))
    | st.just("<script>x</script>"),
    y=st.floats(min_value=0, max_value=5000, allow_nan=False).map(lambda v: round(v, 1)),
    flagged=st.booleans(),
    points=st.lists(_POINTS, max_size=5),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_ROWS, max_size=4))
def test_chart_points_are_what_the_template_loop_wrote(rows: list[ChartRow]) -> None:
    env = html_environment()
    before = env.from_string(TEMPLATE_LOOP).render(rows=rows)
    after = env.from_string(NOW).render(rows=rows, chart_points=chart_points)
    assert after == before


def test_a_label_with_markup_is_escaped() -> None:
    row = ChartRow(
        '<img src=x onerror="alert(1)">', 10.0, True, [ChartPoint(1.5, 2.0, "2026-01-02", 3, 4000)]
    )
    svg = str(chart_points(row))
    assert "<img" not in svg and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in svg
    assert "4,000 records in 3 event(s)" in svg
