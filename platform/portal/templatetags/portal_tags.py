"""Formatting for portal pages: bytes, money, ratios, and the savings chart as inline SVG."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from billing.money import format_minor
from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from portal.selectors import MonthSavings

register = template.Library()

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB")


@register.filter
def human_bytes(value: Any) -> str:
    """Decimal units, as CDNs bill: 1 GB = 10^9 bytes. Negative values keep their sign."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        return "–"
    sign = "-" if n < 0 else ""
    size = float(abs(n))
    for unit in _UNITS:
        if size < 1000 or unit == _UNITS[-1]:
            return f"{sign}{size:.0f} {unit}" if unit == "B" else f"{sign}{size:.2f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


@register.filter
def money(value: Any, currency: str) -> str:
    if not currency:
        return "–"
    return format_minor(int(value or 0), currency)


@register.filter
def percent(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{float(value) * 100:.{int(digits)}f}%"


@register.filter
def get_item(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None


def _nice_ceiling(value: int) -> int:
    if value <= 0:
        return 1
    magnitude: int = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return int(step * magnitude)
    return 10 * magnitude  # pragma: no cover


@register.simple_tag
def savings_chart(months: Sequence[MonthSavings]) -> SafeString:
    """A bar chart of bytes saved per month, drawn on the server (no script). The figures are
    also in the table beside it, so the SVG is a picture with a title for screen readers."""
    width, height, left, bottom, top = 720, 260, 64, 28, 12
    plot_h = height - bottom - top
    slot = (width - left - 8) / max(len(months), 1)
    peak = _nice_ceiling(max([m.bytes_saved for m in months] + [0]))
    grid = format_html_join(
        "",
        '<line x1="{}" x2="{}" y1="{}" y2="{}" class="grid"/>'
        '<text x="{}" y="{}" class="axis" text-anchor="end">{}</text>',
        (
            (
                left,
                width - 8,
                f"{top + plot_h * (1 - f):.1f}",
                f"{top + plot_h * (1 - f):.1f}",
                left - 8,
                f"{top + plot_h * (1 - f) + 4:.1f}",
                human_bytes(int(peak * f)),
            )
            for f in (0, 0.25, 0.5, 0.75, 1)
        ),
    )
    bars = []
    for i, m in enumerate(months):
        value = max(m.bytes_saved, 0)
        h = plot_h * value / peak
        x = left + i * slot + slot * 0.18
        current = i == len(months) - 1
        bars.append(
            format_html(
                '<g><rect x="{}" y="{}" width="{}" height="{}" rx="3" class="{}">'
                "<title>{}: {} saved</title></rect>"
                '<text x="{}" y="{}" class="axis" text-anchor="middle">{}</text></g>',
                f"{x:.1f}",
                f"{top + plot_h - h:.1f}",
                f"{slot * 0.64:.1f}",
                f"{h:.1f}",
                "bar current" if current else "bar",
                m.month.strftime("%B %Y"),
                human_bytes(m.bytes_saved),
                f"{x + slot * 0.32:.1f}",
                height - 8,
                m.month.strftime("%b"),
            )
        )
    total = sum(m.bytes_saved for m in months)
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-labelledby="chart-title" '
        'preserveAspectRatio="xMidYMid meet"><title id="chart-title">Bytes saved per month, '
        "last 12 months: {} in total</title>{}{}</svg>",
        width,
        height,
        human_bytes(total),
        grid,
        SafeString("".join(bars)),
    )
