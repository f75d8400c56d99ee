"""Calls per hour as a server-rendered SVG bar chart (no JavaScript library, no CDN): each
bar is an hour's ended calls, its answered part darker, in the campaign's zone (the store
groups by UTC hour; an auditor read a 10:30 Paris call under a 09h bar, before the legal
opening). Everything written is escaped."""
from __future__ import annotations

from collections import Counter, defaultdict
from html import escape
from typing import Any

from ivr.callflow.outcomes import ANSWERED
from ivr.web import i18n
from ivr.web.display import local_hour, utc_offset

WIDTH, HEIGHT, PAD, LABEL = 720, 180, 24, 16
MAX_HOURS = 48  # the last two days of calling fit the page


def overview_chart(overview: dict[str, Any], zone: str, lang: str) -> str:
    """An overview's chart, its bars' titles in `lang`: the English one the overview holds
    (drawn once a refresh, app._caches), else drawn again in that language."""
    return overview["chart_svg"] if lang == "en" else \
        per_hour_svg(overview["per_hour"], zone, lang)


def per_hour_svg(rows: list[dict[str, Any]], zone: str | None = None, lang: str = "en") -> str:
    """The chart of `rows` (UTC hours) by hour of `zone` (else UTC), its bars' titles in
    `lang` (the API's `chart_svg` is English; a page asks for its own language)."""
    zone = zone or "UTC"
    words = i18n.translate(lang, "chart_bar")
    name = i18n.translate(lang, "chart_name")
    # By UTC hour, labelled in local time: the night the clocks go back has two 02:00 hours,
    # one bar each (keyed by local time they were one bar of both hours' calls), each title
    # with its offset then.
    hours: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # UTC hour -> [all, answered]
    for r in rows:
        hours[r["hour"]][0] += int(r["n"])
        if r["outcome"] in ANSWERED:
            hours[r["hour"]][1] += int(r["n"])
    shown = sorted(hours)[-MAX_HOURS:]
    local = {h: local_hour(h, zone) for h in shown}
    twice = {t for t, n in Counter(local.values()).items() if n > 1}
    if not shown:
        return (f'<svg id="chart-svg" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
                f'height="{LABEL * 2}" role="img" aria-label="{escape(name)} : —">'
                f'<text x="4" y="{LABEL}">—</text></svg>')
    top = max(hours[h][0] for h in shown) or 1
    slot = (WIDTH - PAD) / len(shown)
    bar = max(2.0, slot * 0.8)
    area = HEIGHT - LABEL - 4
    parts = [f'<text x="0" y="12" class="axis">{top}</text>']
    said_all: list[str] = []  # each bar's title: the chart's text for a screen reader
    for i, utc_hour in enumerate(shown):
        total, answered = hours[utc_hour]
        h = local[utc_hour]
        x = PAD + i * slot
        h_all, h_ans = area * total / top, area * answered / top
        said = f"{h[:10]} {h[11:16]}" + (f" ({utc_offset(utc_hour, zone)})" if h in twice
                                         else "")
        title = escape(words.format(hour=said, zone=zone, total=total, answered=answered))
        said_all.append(title)
        parts.append(f'<g><title>{title}</title>'
                     f'<rect class="bar-all" x="{x:.1f}" y="{area - h_all + 2:.1f}" '
                     f'width="{bar:.1f}" height="{h_all:.1f}"/>'
                     f'<rect class="bar-answered" x="{x:.1f}" y="{area - h_ans + 2:.1f}" '
                     f'width="{bar:.1f}" height="{h_ans:.1f}"/></g>')
        if i % max(1, len(shown) // 8) == 0:
            parts.append(f'<text x="{x:.1f}" y="{HEIGHT - 2}" class="axis">'
                         f"{escape(h[8:10])}/{escape(h[11:13])}h"
                         f"{escape(h[14:16]) if h[14:16] not in ('', '00') else ''}</text>")
    parts.append("</svg>")
    # role=img hides the bars' titles from a screen reader: its name says them all
    head = (f'<svg id="chart-svg" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
            f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="{escape(name)} : {"; ".join(said_all)}">')
    return head + "".join(parts)
