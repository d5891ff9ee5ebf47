from django import template

from accounts import second_factor
from submissions import logpolicy

from .. import selectors

register = template.Library()


@register.simple_tag(takes_context=True)
def researcher_log(context, submission, kind):
    """The part of a log the viewer may see: for researchers the same policy as e-mails; an admin
    who passed the second factor sees the log as it grows."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if (
        user is not None
        and user.is_staff
        and user.pk != submission.owner_id  # staff who submit code see their own runs as researchers do
        and second_factor.missing(request) is None
    ):
        return logpolicy.staff_log_view(submission, kind)
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
