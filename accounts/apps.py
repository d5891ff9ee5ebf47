from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Researcher accounts"  # allauth's own app is called "Accounts" in the admin

    def ready(self):
        from . import second_factor  # noqa: F401  (counts setting up an authenticator app as a second factor)
