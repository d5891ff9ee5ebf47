from django import template

from .. import logpolicy, selectors

register = template.Library()


@register.simple_tag
def researcher_log(submission, kind):
    """The part of a log its researcher may see: the same policy for pages and e-mails."""
    return logpolicy.researcher_log_view(submission, kind)


@register.simple_tag
def researcher_reason(submission):
    return logpolicy.researcher_reason(submission)


@register.inclusion_tag("exports/_panel.html", takes_context=True)
def export_panel(context, submission):
    request = context["request"]
    return {
        **selectors.export_panel(request.user, submission),
        "csrf_token": context.get("csrf_token"),
        "user": request.user,
    }
