"""``connector report --html``: one self-contained page a support lead opens in a browser.

Two charts drawn as inline SVG (no script, no external asset, so it opens offline and can be
mailed): verdicts of the drafts per day, and per confidence band. Every text that came from the
store or the config is escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

from connector.engine.adoption import Adoption

COLOURS = {"used": "#2e7d32", "edited": "#9ccc65", "discarded": "#e53935",
           "pending": "#b0bec5", "expired": "#78909c"}
BAR, GAP, HEIGHT = 44, 12, 180


def render(report: dict[str, Any]) -> str:
    overall = report["overall"]
    sections = [
        f"<h1>Draft adoption</h1><p>{escape(report['since'][:16].replace('T', ' '))} to "
        f"{escape(report['until'][:16].replace('T', ' '))} UTC</p>",
        _summary_table(report),
        "<h2>Verdicts per day</h2>", _stacked_bars(report["daily"]),
        "<h2>Verdicts by Uppzy confidence</h2>", _stacked_bars(overall["by_confidence"]),
        _suggestion(overall["suggested_min_confidence"]),
        _legend(),
    ]
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Draft adoption</title><style>body{font-family:sans-serif;margin:2em;"
            "color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:4px 8px;text-align:right}th:first-child,td:first-child{text-align:left}"
            "</style></head><body>" + "\n".join(sections) + "</body></html>\n")


def _summary_table(report: dict[str, Any]) -> str:
    head = "".join(f"<th>{h}</th>" for h in (
        "adapter", "drafts", "fallbacks", *[o.value for o in Adoption]))
    rows = []
    for name, s in [*report["adapters"].items(), ("all", report["overall"])]:
        cells = [s["drafts_posted"], s["fallbacks"], *[s["adoption"][o.value] for o in Adoption]]
        rows.append(f"<tr><td>{escape(name)}</td>"
                    + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _stacked_bars(groups: dict[str, dict[str, int]]) -> str:
    """One bar per group, stacked by verdict, scaled to the largest group."""
    if not groups:
        return "<p>No drafts in this window.</p>"
    top = max(sum(c.values()) for c in groups.values()) or 1
    width = len(groups) * (BAR + GAP) + GAP
    parts = []
    for index, (label, counts) in enumerate(groups.items()):
        x, y = GAP + index * (BAR + GAP), HEIGHT
        for outcome in Adoption:
            n = counts.get(outcome.value, 0)
            if not n:
                continue
            h = n / top * (HEIGHT - 20)
            y -= h
            parts.append(f'<rect x="{x}" y="{y:.1f}" width="{BAR}" height="{h:.1f}" '
                         f'fill="{COLOURS[outcome.value]}"><title>{escape(label)}: '
                         f'{n} {outcome.value}</title></rect>')
        parts.append(f'<text x="{x + BAR / 2}" y="{HEIGHT + 14}" font-size="9" '
                     f'text-anchor="middle">{escape(_short(label))}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT + 20}" '
            f'role="img">{"".join(parts)}</svg>')


def _short(label: str) -> str:
    """A day as month-day; a confidence band as it is."""
    return label[5:] if len(label) == 10 and label[4] == "-" else label


def _suggestion(suggestion: dict[str, Any]) -> str:
    value = suggestion["value"]
    head = ("<p>No confidence band's drafts are mostly discarded: no threshold suggested.</p>"
            if value is None else
            f"<p>Suggested <code>draft.min_confidence: {escape(str(value))}</code>.</p>")
    items = "".join(f"<li>{escape(line)}</li>" for line in suggestion["arithmetic"])
    return f"{head}<p>Rule: {escape(suggestion['rule'])}.</p><ul>{items}</ul>"


def _legend() -> str:
    return "<p>" + " ".join(
        f'<span style="color:{COLOURS[o.value]}">&#9632;</span> {o.value}' for o in Adoption
    ) + "</p>"
