from django import template

from submissions.progress import format_duration

register = template.Library()


@register.filter
def duration(seconds) -> str:
    """Seconds as "8 s", "3 min 12 s" or "2 h 05 min"."""
    return format_duration(seconds)


@register.filter
def metric(value) -> str:
    """A metric's value to six significant digits: 0.8500000000000001 reads 0.85."""
    try:
        return f"{float(value):.6g}"
    except (TypeError, ValueError):
        return str(value)
