from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Researcher accounts"  # allauth's own app is called "Accounts" in the admin
