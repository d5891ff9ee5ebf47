"""How the portal, its e-mails and allauth's messages name a person."""

from __future__ import annotations


def person(user) -> str:
    """The full name they gave, else their e-mail address: never a user name the platform made up
    for them (sign-up asks for none)."""
    if user is None:
        return ""
    researcher = getattr(user, "researcher", None)  # staff have none
    if researcher is not None:
        return researcher.display_name
    return user.get_full_name() or user.email or user.get_username()
