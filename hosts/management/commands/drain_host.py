"""Drain a host: it takes no new work, and what runs there runs to its end.

manage.py drain_host gpu-2 --by steward@hospital.example --wait   # until nothing runs there
manage.py drain_host gpu-2 --undo                                  # take work again
"""

import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from hosts.models import Host
from hosts.selectors import runs_on
from hosts.services import host_drain, host_undrain


class Command(BaseCommand):
    help = "Stop a host taking new work (what runs there finishes), or let it take work again with --undo."

    def add_arguments(self, parser):
        parser.add_argument("name", help="the host's name (M2D_HOST_NAME), as the dashboard lists it")
        parser.add_argument("--undo", action="store_true", help="lift the drain: the host takes work again")
        parser.add_argument("--wait", action="store_true", help="wait until nothing runs on the host any more")
        parser.add_argument("--timeout", type=float, default=0, help="with --wait: give up after this many seconds")
        parser.add_argument("--by", default="", help="the e-mail address of the staff member who asks (audit trail)")
        parser.add_argument("--note", default="", help="why, for the host's audit trail")

    def handle(self, *args, name, undo, wait, timeout, by, note, **options):
        host = Host.objects.filter(name=name).first()
        if host is None:
            known = ", ".join(Host.objects.values_list("name", flat=True)) or "none has reported yet"
            raise CommandError(f"No host is called {name!r}; the hosts are: {known}.")
        actor = self._staff(by)
        if undo:
            changed = host_undrain(by=actor, host=host, note=note)
            self.stdout.write(f"{name} takes new work again." if changed else f"{name} was not draining.")
            return
        changed = host_drain(by=actor, host=host, note=note)
        self.stdout.write(f"{name} takes no new work." if changed else f"{name} was draining already.")
        running = runs_on(name)
        deadline = time.monotonic() + timeout if timeout else None
        while running and wait:
            if deadline is not None and time.monotonic() > deadline:
                raise CommandError(f"{name} still runs submissions {_ids(running)} after {timeout:.0f} s.")
            time.sleep(2)
            running = runs_on(name)
        if running:
            self.stdout.write(f"Still running there: submissions {_ids(running)}; they finish where they are.")
        else:
            self.stdout.write(f"Nothing runs on {name}: it can be stopped.")

    def _staff(self, email: str):
        if not email:
            return None
        user = get_user_model().objects.filter(email__iexact=email, is_staff=True).first()
        if user is None:
            raise CommandError(f"No staff member has the address {email}.")
        return user


def _ids(ids: list[int]) -> str:
    return ", ".join(str(pk) for pk in ids)
