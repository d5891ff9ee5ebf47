from allauth.account.forms import LoginForm, SignupForm
from django import forms
from django.db import transaction

from .services import researcher_signup


class ResearcherSignupForm(SignupForm):
    """allauth's sign-up (e-mail, password) plus what the approvers need to decide."""

    full_name = forms.CharField(
        max_length=200, label="Full name", widget=forms.TextInput(attrs={"autocomplete": "name"})
    )
    institution = forms.CharField(
        max_length=200,
        label="Institution",
        help_text="The university, hospital or company you work for.",
        widget=forms.TextInput(attrs={"autocomplete": "organization"}),
    )
    intended_use = forms.CharField(
        label="Intended use",
        min_length=30,
        max_length=4000,
        help_text="In a few sentences: what you want to train or evaluate on the mammography data, and why. "
        "The admins read this before approving your account.",
        error_messages={
            "min_length": "Tell the admins in a sentence or two what you plan to do with the data "
            "(at least %(limit_value)d characters; you wrote %(show_value)d)."
        },
        widget=forms.Textarea(attrs={"rows": 4}),
    )

    field_order = ["full_name", "email", "institution", "intended_use", "password1", "password2"]

    def save(self, request):
        # The user, their e-mail address and their profile are stored together or not at all.
        with transaction.atomic():
            user = super().save(request)
            researcher_signup(
                user=user,
                full_name=self.cleaned_data["full_name"],
                institution=self.cleaned_data["institution"],
                intended_use=self.cleaned_data["intended_use"],
            )
        return user


class PortalLoginForm(LoginForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["login"].label = "E-mail or user name"  # allauth's own label is just "Login"


class DecisionReasonForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text="The researcher receives this by e-mail.",
    )
