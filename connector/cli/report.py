"""``connector report``: are the drafts used? Per adapter and overall, for a window of time.

Counts come from the store (``store.reports.report_rows``): drafts posted, fallback notes,
what agents did with the drafts (``engine/adoption.py``), how long customers waited for a draft
and for the first agent reply (drafted tickets against the others), adoption by Uppzy's
confidence, and the ``draft.min_confidence`` that table suggests. Shadow mode reports the
similarity of kept answers to the agents' replies instead of adoption.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import Annotated, Any

import typer

from connector.cli.app import ConfigOpt, LevelOpt, command, load, out, setup
from connector.core.errors import UsageError
from connector.engine.adoption import Adoption
from connector.store.reports import ReportRow

MOSTLY = 0.5  # a band whose decided drafts are discarded more often than this is "mostly"
MIN_DECIDED = 5  # fewer verdicts than this in a band say nothing about it
LEVELS = ("low", "medium", "high")


def band_of(row: ReportRow) -> str:
    """The confidence band of a turn: its score's tenth (``0.5-0.6``), else its level."""
    score = row.confidence_score
    if score is not None:
        score = score / 100 if score > 1 else score
        low = min(round(score * 100) // 10, 9) / 10
        return f"{low:.1f}-{low + 0.1:.1f}"
    return (row.confidence_level or "unknown").lower()


def summarise(rows: list[ReportRow]) -> dict[str, Any]:
    """Every figure of the report for one set of turns."""
    drafts = [r for r in rows if r.state == "posted" and r.outcome == "draft"]
    verdict = Counter(r.adoption or Adoption.PENDING.value for r in drafts)
    bands: dict[str, Counter[str]] = {}
    for r in drafts:
        bands.setdefault(band_of(r), Counter())[r.adoption or Adoption.PENDING.value] += 1
    by_band = {band: {o.value: c.get(o.value, 0) for o in Adoption}
               for band, c in sorted(bands.items())}
    shadow = [r.similarity for r in rows if r.state == "shadowed" and r.similarity is not None]
    return {
        "drafts_posted": len(drafts),
        "fallbacks": sum(1 for r in rows if r.state == "posted" and r.outcome == "fallback"),
        "adoption": {o.value: verdict.get(o.value, 0) for o in Adoption},
        "median_seconds_to_draft": _median_gap((r.customer_at, r.posted_at) for r in drafts),
        "median_seconds_to_agent_reply": {
            "drafted": _median_gap((r.customer_at, r.first_agent_reply_at) for r in drafts),
            "not_drafted": _median_gap((r.customer_at, r.first_agent_reply_at) for r in rows
                                       if r.state == "cancelled"),
        },
        "by_confidence": by_band,
        "suggested_min_confidence": suggest_min_confidence(by_band),
        "shadow_similarity": similarity_bins(shadow) if shadow else None,
    }


def suggest_min_confidence(by_band: dict[str, dict[str, int]]) -> dict[str, Any]:
    """The threshold that drops the bands whose drafts are mostly discarded.

    Bands are read from the most confident down; the first band (with at least
    ``MIN_DECIDED`` verdicts) where discarded drafts are more than half of the decided ones
    sets the threshold at its upper edge: every draft below it would have been left out.
    ``arithmetic`` shows each band's share, so a lead can check the suggestion.
    """
    order = sorted(by_band, key=_band_rank, reverse=True)
    lines, value = [], None
    for band in order:
        counts = by_band[band]
        decided = sum(counts[o.value] for o in (Adoption.USED, Adoption.EDITED,
                                                Adoption.DISCARDED))
        if not decided:
            continue
        share = counts[Adoption.DISCARDED.value] / decided
        lines.append(f"{band}: {counts[Adoption.DISCARDED.value]} of {decided} decided "
                     f"drafts discarded ({share:.0%})")
        if value is None and decided >= MIN_DECIDED and share > MOSTLY:
            value = _upper_edge(band)
    return {"value": value, "rule": f"the upper edge of the most confident band whose "
            f"decided drafts are more than {MOSTLY:.0%} discarded (at least {MIN_DECIDED} "
            "verdicts)", "arithmetic": lines}


def similarity_bins(values: list[float]) -> dict[str, int]:
    """Shadow mode: how many kept answers fall in each tenth of similarity."""
    bins = Counter(min(int(v * 10), 9) for v in values)
    return {f"{i / 10:.1f}-{(i + 1) / 10:.1f}": bins.get(i, 0) for i in range(10)}


def daily(rows: list[ReportRow]) -> dict[str, dict[str, int]]:
    """Verdicts of posted drafts per day the customer wrote: the page's chart over time."""
    days: dict[str, Counter[str]] = {}
    for r in rows:
        if r.state == "posted" and r.outcome == "draft":
            days.setdefault(r.customer_at.date().isoformat(), Counter())[
                r.adoption or Adoption.PENDING.value] += 1
    return {day: {o.value: c.get(o.value, 0) for o in Adoption}
            for day, c in sorted(days.items())}


def _band_rank(band: str) -> float:
    if band in LEVELS:
        return LEVELS.index(band) / len(LEVELS)
    try:
        return float(band.split("-")[0])
    except ValueError:
        return -1.0  # unknown confidence: never a threshold


def _upper_edge(band: str) -> float | str:
    if band in LEVELS:
        return LEVELS[min(LEVELS.index(band) + 1, len(LEVELS) - 1)]
    return float(band.split("-")[1])


def _median_gap(pairs: Iterable[tuple[datetime, datetime | None]]) -> float | None:
    gaps = [(end - start).total_seconds() for start, end in pairs if end is not None]
    return round(median(gaps), 1) if gaps else None


def build(rows: list[ReportRow], since: datetime, until: datetime) -> dict[str, Any]:
    """The whole report: per adapter, overall, and the days for the chart."""
    adapters = sorted({r.adapter for r in rows})
    return {
        "since": since.isoformat(timespec="seconds"),
        "until": until.isoformat(timespec="seconds"),
        "adapters": {name: summarise([r for r in rows if r.adapter == name])
                     for name in adapters},
        "overall": summarise(rows),
        "daily": daily(rows),
    }


def as_csv(report: dict[str, Any]) -> str:
    """One line per adapter and one for all: the counts a spreadsheet wants."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["adapter", "drafts_posted", "fallbacks", *[o.value for o in Adoption],
                     "median_seconds_to_draft", "suggested_min_confidence"])
    for name, s in [*report["adapters"].items(), ("all", report["overall"])]:
        writer.writerow([name, s["drafts_posted"], s["fallbacks"],
                         *[s["adoption"][o.value] for o in Adoption],
                         s["median_seconds_to_draft"], s["suggested_min_confidence"]["value"]])
    return buffer.getvalue()


def table_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"report {report['since']} .. {report['until']}"]
    for name, s in [*report["adapters"].items(), ("all", report["overall"])]:
        a = s["adoption"]
        lines.append(f"{name}: {s['drafts_posted']} drafts, {s['fallbacks']} fallback notes; "
                     f"used {a['used']}, edited {a['edited']}, discarded {a['discarded']}, "
                     f"pending {a['pending']}, expired {a['expired']}")
        if s["median_seconds_to_draft"] is not None:
            replies = s["median_seconds_to_agent_reply"]
            lines.append(f"  median wait: draft {s['median_seconds_to_draft']}s; first agent "
                         f"reply {replies['drafted']}s drafted, {replies['not_drafted']}s not")
    suggestion = report["overall"]["suggested_min_confidence"]
    lines.append("suggested draft.min_confidence: "
                 + ("none" if suggestion["value"] is None else str(suggestion["value"])))
    lines += [f"  {line}" for line in suggestion["arithmetic"]]
    shadow = report["overall"]["shadow_similarity"]
    if shadow:
        lines.append("shadow mode similarity: " + ", ".join(
            f"{band} {n}" for band, n in shadow.items() if n))
    return lines


@command(name="report")
def report_command(
    since: Annotated[str, typer.Option(
        "--since", help="Start: ISO date or datetime, or a time ago such as 7d.")] = "7d",
    until: Annotated[str | None, typer.Option(
        "--until", help="End: ISO datetime, or a date for that whole day [default: now].",
        show_default=False)] = None,
    adapter: Annotated[str | None, typer.Option(
        "--adapter", "-a", help="Only this adapter.", show_default=False)] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | json | csv")] = "table",
    html: Annotated[Path | None, typer.Option(
        "--html", help="Also write a self-contained page with charts to this file.",
        show_default=False)] = None,
    config: ConfigOpt = None,
    log_level: LevelOpt = "warning",
) -> None:
    """Are the drafts used? Adoption, waiting times and a suggested min_confidence."""
    setup(log_level)
    cfg = load(config)
    from connector.cli.report_html import render
    from connector.engine.backfill_request import make_window
    from connector.store.models import utcnow
    from connector.store.probe import open_existing
    from connector.store.reports import report_rows

    if fmt not in ("table", "json", "csv"):
        raise UsageError("--format: table, json or csv")
    if adapter is not None and adapter not in {a.name for a in cfg.adapters}:
        raise UsageError(f"--adapter: no adapter named {adapter!r} in the config")
    window = make_window(since, until)
    end = window.until or utcnow()
    db = open_existing(cfg.database.url)
    try:
        rows = report_rows(db, window.since, end, adapter)
    finally:
        db.dispose()
    report = build(rows, window.since, end)
    if html is not None:
        html.write_text(render(report))
    if fmt == "json":
        out.print_json(json.dumps(report))
    elif fmt == "csv":
        out.print(as_csv(report), markup=False, highlight=False, end="")
    else:
        for line in table_lines(report):
            out.print(line, markup=False, highlight=False)
