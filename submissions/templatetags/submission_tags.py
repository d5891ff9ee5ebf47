from django import template
from django.utils.html import escape
from django.utils.safestring import mark_safe

from submissions.progress import format_duration

register = template.Library()


@register.filter
def duration(seconds) -> str:
    """Seconds as "8 s", "3 min 12 s" or "2 h 05 min"."""
    return format_duration(seconds)


@register.filter
def code_spans(text) -> str:
    """A message's `commands` shown as code rather than between backticks; the rest escaped."""
    parts = str(text).split("`")
    if len(parts) % 2 == 0:  # an odd backtick: show the text as it is
        return escape(text)
    return mark_safe("".join(escape(p) if i % 2 == 0 else f"<code>{escape(p)}</code>" for i, p in enumerate(parts)))


@register.filter
def metric(value) -> str:
    """A metric's value to six significant digits: 0.8500000000000001 reads 0.85."""
    try:
        return f"{float(value):.6g}"
    except (TypeError, ValueError):
        return str(value)
