from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from accounts.services import AccountError, staff_create


class Command(BaseCommand):
    help = (
        "Create a staff account (the admin site, reviews, releases) ready to sign in, and print its "
        "password once. At the first sign-in its owner sets up an authenticator app."
    )

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--name", required=True, help="full name, as colleagues and researchers see it")
        parser.add_argument("--username", default="", help="default: the e-mail address's part before the @")

    def handle(self, *args, email, name, username, **options):
        try:
            user, password = staff_create(email=email, full_name=name, username=username)
        except AccountError as exc:
            raise CommandError(str(exc)) from exc
        login = settings.PORTAL_URL + reverse("account_login")
        change = settings.PORTAL_URL + reverse("account_change_password")
        self.stdout.write(
            f"Staff account for {user.first_name} <{user.email}> (user name {user.username}), with full admin rights.\n"
            f"Password (shown only now): {password}\n"
            "\n"
            f"Sign in at {login} with the e-mail address and this password. The portal then asks you to\n"
            "set up an authenticator app (TOTP) and to save your recovery codes; the admin site opens\n"
            f"after that. Then choose a password of your own: {change}\n"
        )
