from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.contrib import messages
from django.core.mail import EmailMultiAlternatives
from django.urls import reverse

from m2d.mail import html_from_text

from . import second_factor
from .models import Researcher
from .services import researcher_email_verified


class ResearcherAccountAdapter(DefaultAccountAdapter):
    """Sign-up goes through allauth; what happens to a researcher after it goes through services."""

    def render_mail(self, template_prefix, email, context, headers=None):
        """allauth's mails (address confirmation, password reset) in text and HTML, like ours."""
        message = super().render_mail(template_prefix, email, context, headers=headers)
        if isinstance(message, EmailMultiAlternatives) and not message.alternatives:
            message.attach_alternative(html_from_text(message.body, {"subject": message.subject}), "text/html")
        return message

    def is_open_for_signup(self, request) -> bool:
        return settings.M2D_SIGNUP_OPEN

    def confirm_email(self, request, email_address) -> bool:
        verified = super().confirm_email(request, email_address)
        researcher = Researcher.objects.filter(user_id=email_address.user_id).first()
        if verified and researcher is not None:
            researcher_email_verified(researcher=researcher)
        return verified

    def get_signup_redirect_url(self, request) -> str:
        return reverse("accounts:profile")  # a new researcher waits for approval: say so

    def get_login_redirect_url(self, request) -> str:
        if second_factor.missing(request) == "set_up":  # a new staff member: the app first, then on
            messages.info(request, second_factor.SET_UP)
            return reverse("mfa_activate_totp")
        return self._waiting_page(request.user) or super().get_login_redirect_url(request)

    def get_email_verification_redirect_url(self, email_address) -> str:
        return self._waiting_page(email_address.user) or super().get_email_verification_redirect_url(email_address)

    @staticmethod
    def _waiting_page(user) -> str:
        """Researchers who may not submit yet land on the page that tells them where they stand."""
        researcher = Researcher.objects.filter(user_id=user.pk).first()
        return reverse("accounts:profile") if researcher is not None and not researcher.is_approved else ""
