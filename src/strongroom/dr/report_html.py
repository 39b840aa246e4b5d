"""The report as one self-contained HTML page: inline CSS, inline SVG charts, no script.

Nothing on the page is fetched: no link, image, font, stylesheet or script,
so it opens the same from a mail, a USB stick or an archive years later, and
a crafted value cannot make it call anywhere. Every value passes through
`esc` (html.escape with quotes): plan and step names, paths and command
output come from repositories and commands. It reads on a phone (every
table stacks: label/value tables into lines, the others into one labelled card
a row, so nothing scrolls sideways) and prints (one run to a page, nothing cut
off). Only the cells that hold free-form text (values, paths, commands) may
break a word anywhere; short words (a column's name, "essential", "0.05s")
stay whole, or a table would squeeze them to a letter a line.
"""

from __future__ import annotations

import html
from typing import Sequence

from strongroom.dr.durations import format_seconds
from strongroom.dr.report import (CHECK_HEAD, HOOK_HEAD, OUTPUT_LINES, RTO_HEAD, TREND_HEAD, TrendPoint, check_rows,
                                  header_rows, hook_rows, problem_lines, rto_rows, run_title, seconds_text,
                                  pass_words, step_rows, trend_rows, utc_text)
from strongroom.dr.results import PlanRun

_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x09), *range(0x0b, 0x20), 0x7f, *range(0x80, 0xa0))}

_CSS = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1f24;
       margin: 0 auto; max-width: 62rem; padding: 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 .5rem; overflow-wrap: anywhere; }
h2 { font-size: 1.15rem; margin: 1.6rem 0 .5rem; border-bottom: 1px solid #d0d7de; overflow-wrap: anywhere; }
h3 { font-size: 1rem; margin: 1rem 0 .3rem; }
table { border-collapse: collapse; width: 100%; margin: .3rem 0; }
th, td { border: 1px solid #d0d7de; padding: .25rem .45rem; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
table.facts td, td.free { overflow-wrap: anywhere; }
th { background: #f3f5f7; font-weight: 600; }
table.facts th { width: 12rem; }
.scroll { overflow-x: auto; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; padding: .5rem; white-space: pre-wrap;
      word-break: break-all; font-size: .85rem; margin: .3rem 0; }
.verdict { display: inline-block; padding: .2rem .7rem; border-radius: .3rem; font-weight: 700;
           border: 2px solid; }
.pass { color: #116329; border-color: #1a7f37; background: #dafbe1; }
.pass-with-warnings, .warning { color: #7d4e00; border-color: #bf8700; background: #fff8c5; }
.fail, .failed, .cancelled { color: #a40e26; border-color: #cf222e; background: #ffebe9; }
.passed { color: #116329; } .skipped { color: #57606a; }
.status { font-weight: 600; }
svg { width: 100%; height: auto; max-width: 40rem; display: block; }
svg text { font: 11px system-ui, sans-serif; fill: #57606a; }
.chart-line { fill: none; stroke: #0969da; stroke-width: 2; }
.chart-target { stroke: #cf222e; stroke-width: 1.5; stroke-dasharray: 6 4; }
.chart-axis { stroke: #8c959f; stroke-width: 1; }
.dot-pass { fill: #1a7f37; } .dot-pass-with-warnings { fill: #bf8700; } .dot-fail { fill: #cf222e; }
article + article { margin-top: 3rem; border-top: 3px double #8c959f; }
@media (max-width: 40rem) {
  body { padding: .5rem; font-size: 14px; }
  table.facts, table.facts tbody, table.facts tr, table.facts th, table.facts td { display: block; width: auto; }
  table.facts th { border-bottom: 0; }
  table.grid thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%);
                     white-space: nowrap; }
  table.grid, table.grid tbody, table.grid tr { display: block; width: auto; }
  table.grid tr { border: 1px solid #d0d7de; margin: .4rem 0; }
  table.grid td { display: grid; grid-template-columns: minmax(5.5rem, 35%) minmax(0, 1fr); gap: .5rem;
                  border: 0; overflow-wrap: anywhere; }
  table.grid td + td { border-top: 1px solid #eaeef2; }
  table.grid td::before { content: attr(data-label); font-weight: 600; }
}
@media print {
  body { max-width: none; font-size: 11pt; }
  .scroll { overflow: visible; }
  article { break-after: page; }
  section, table, pre, svg { break-inside: avoid; }
  .verdict, th { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def esc(value: object) -> str:
    """Any value as HTML text: escaped, control characters shown as \\xNN."""
    return html.escape(str(value).translate(_CONTROLS), quote=True)


def _facts(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th scope=\"row\">{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f"<table class=\"facts\"><tbody>{body}</tbody></table>"


def _grid(head: Sequence[str], rows: Sequence[Sequence[str]], free: Sequence[str] = ()) -> str:
    """A table with a column per `head`; the columns named in `free` hold free-form text (paths,
    commands) that may break anywhere. Each cell carries its column's name for the stacked phone layout."""
    top = "".join(f"<th scope=\"col\">{esc(h)}</th>" for h in head)
    cells = [f"<td data-label=\"{esc(h)}\"" + (" class=\"free\">" if h in free else ">") for h in head]
    body = "".join("<tr>" + "".join(f"{cell}{esc(c)}</td>" for cell, c in zip(cells, row, strict=True)) + "</tr>"
                   for row in rows)
    return (f"<div class=\"scroll\"><table class=\"grid\"><thead><tr>{top}</tr></thead><tbody>{body}</tbody>"
            "</table></div>")


def _css_class(word: str) -> str:
    """A verdict or status as a class name (only the known words; anything else gets none)."""
    return word if word in ("pass", "pass-with-warnings", "fail", "passed", "warning", "failed", "skipped",
                            "cancelled") else "unknown"


def _step(number: int, step) -> str:
    out = [f"<section><h2>Step {number}: {esc(step.name)} "
           f"<span class=\"status {_css_class(step.status)}\">({esc(step.status)})</span></h2>",
           _facts(step_rows(step))]
    if step.messages:
        out.append("<ul>" + "".join(f"<li>{esc(m)}</li>" for m in step.messages) + "</ul>")
    if step.problems:
        out.append("<h3>Damaged objects</h3><ul>" + "".join(f"<li>{esc(line)}</li>" for line in problem_lines(step))
                   + "</ul>")
    if step.hooks:
        out += ["<h3>Commands</h3>", _grid(HOOK_HEAD, hook_rows(step), free=("Command",))]
        for h in step.hooks:
            if h.output_tail:
                out.append(f"<p>Last lines of the {esc(h.phase)} command <code>{esc(h.command[:60])}</code>:</p>"
                           f"<pre>{esc(chr(10).join(h.output_tail[-OUTPUT_LINES:]))}</pre>")
    out.append("</section>")
    return "".join(out)


def _rto_section(run: PlanRun) -> str:
    return "<section><h2>RTO</h2>" + _grid(RTO_HEAD, rto_rows(run), free=("Step",)) + "</section>"


def _checks_section(run: PlanRun) -> str:
    if not run.checks:
        return ""
    return "<section><h2>Repository checks</h2>" + _grid(CHECK_HEAD, check_rows(run), free=("Repository", "Problems")) + "</section>"


def line_chart(title: str, points: Sequence[TrendPoint], values: Sequence[float | None],
               target: float | None) -> str:
    """An SVG line chart of `values` (seconds), one point per test, with the target as a dashed line."""
    width, height, left, right, top, bottom = 600, 220, 64, 16, 24, 40
    known = [v for v in values if v is not None]
    if not known:
        return f"<p>{esc(title)}: no value recorded.</p>"
    # A target far above every value would flatten the line: it is then named, not drawn.
    drawn_target = target if target is not None and target <= 3 * max(known) else None
    top_value = max(known + ([drawn_target] if drawn_target is not None else [])) * 1.1 or 1.0
    inner_w, inner_h = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + (inner_w * i / (len(values) - 1) if len(values) > 1 else inner_w / 2)

    def y(v: float) -> float:
        return top + inner_h * (1 - v / top_value)

    parts = [f"<svg viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{esc(title)}\">",
             f"<title>{esc(title)}</title>",
             f"<text x=\"{left}\" y=\"14\">{esc(title)}</text>",
             f"<line class=\"chart-axis\" x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{top + inner_h}\"/>",
             f"<line class=\"chart-axis\" x1=\"{left}\" y1=\"{top + inner_h}\" x2=\"{width - right}\" "
             f"y2=\"{top + inner_h}\"/>",
             f"<text x=\"{left - 6}\" y=\"{top + 4}\" text-anchor=\"end\">{esc(format_seconds(top_value))}</text>",
             f"<text x=\"{left - 6}\" y=\"{top + inner_h + 4}\" text-anchor=\"end\">0</text>"]
    if target is not None and drawn_target is None:
        parts.append(f"<text x=\"{width - right}\" y=\"14\" text-anchor=\"end\">"
                     f"target {esc(format_seconds(target))}, above the chart</text>")
    elif target is not None:
        parts.append(f"<line class=\"chart-target\" x1=\"{left}\" y1=\"{y(target):.1f}\" x2=\"{width - right}\" "
                     f"y2=\"{y(target):.1f}\"><title>target {esc(format_seconds(target))}</title></line>")
        parts.append(f"<text x=\"{width - right}\" y=\"{y(target) - 4:.1f}\" text-anchor=\"end\">"
                     f"target {esc(format_seconds(target))}</text>")
    segment: list[str] = []
    for i, v in enumerate(list(values) + [None]):
        if v is None:
            if len(segment) > 1:
                parts.append(f"<polyline class=\"chart-line\" points=\"{' '.join(segment)}\"/>")
            segment = []
            continue
        segment.append(f"{x(i):.1f},{y(v):.1f}")
    for i, (point, v) in enumerate(zip(points, values)):
        if v is not None:
            parts.append(f"<circle class=\"dot-{_css_class(point.verdict)}\" cx=\"{x(i):.1f}\" cy=\"{y(v):.1f}\" "
                         f"r=\"4\"><title>{esc(utc_text(point.started))}: {esc(seconds_text(v))}, "
                         f"{esc(point.verdict)}</title></circle>")
    # The day, or the time of day (UTC) when every point falls on one day.
    first, last = utc_text(points[0].started), utc_text(points[-1].started)
    cut = slice(11, 16) if first[:10] == last[:10] else slice(0, 10)
    parts.append(f"<text x=\"{left}\" y=\"{height - 12}\">{esc(first[cut])}</text>")
    if len(points) > 1:
        parts.append(f"<text x=\"{width - right}\" y=\"{height - 12}\" text-anchor=\"end\">"
                     f"{esc(last[cut])}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _trend_section(points: Sequence[TrendPoint]) -> str:
    out = [f"<section><h2>Trend of the last {len(points)} test(s)</h2>"]
    if len(points) > 1:
        out.append(line_chart("RTO achieved", points, [p.rto_seconds for p in points], points[-1].rto_target))
        out.append(line_chart("RPO achieved (oldest point restored)", points, [p.rpo_seconds for p in points],
                              points[-1].rpo_target))
    out.append(_grid(TREND_HEAD, trend_rows(points)))
    out.append("</section>")
    return "".join(out)


def _article(run: PlanRun, points: Sequence[TrendPoint]) -> str:
    reasons = "".join(f"<li>{esc(r)}</li>" for r in run.reasons) or f"<li>{esc(pass_words(run))}</li>"
    return "".join([
        f"<article><h1>{esc(run_title(run))}</h1>",
        f"<p><span class=\"verdict {_css_class(run.verdict)}\">Verdict: {esc(run.verdict)}</span></p>",
        f"<ul>{reasons}</ul>",
        _facts(header_rows(run)),
        *(_step(n, s) for n, s in enumerate(run.steps, 1)),
        _rto_section(run), _checks_section(run), _trend_section(points),
        "</article>"])


def html_page(reports: Sequence[tuple[PlanRun, Sequence[TrendPoint]]]) -> str:
    """One page holding the report of each run."""
    title = run_title(reports[0][0]) + (f" and {len(reports) - 1} more" if len(reports) > 1 else "")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
            + "".join(_article(run, points) for run, points in reports)
            + "</body></html>\n")
