from django.core.management.base import BaseCommand, CommandError

from ops import health


class Command(BaseCommand):
    help = (
        "Run the readiness checks from the command line (container health checks of the workers). "
        "Exit status 0 when all pass. A process that reaches a Docker engine reports it for the portal."
    )

    def add_arguments(self, parser):
        parser.add_argument("--checks", help="comma-separated: database,redis,docker,mlflow,storage (default: all set)")

    def handle(self, *args, checks: str | None, **options):
        names = [c.strip() for c in checks.split(",") if c.strip()] if checks else None
        try:
            results = health.run_checks(names)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for result in results:
            if result.name == "docker" and health.engine_reachable_here():
                try:
                    health.report_engine(result.ok, result.detail)
                except Exception as exc:  # Redis down: its own check says so
                    self.stderr.write(f"could not report the engine's state: {exc}")
            mark = "ok  " if result.ok else "FAIL"
            self.stdout.write(f"{mark} {result.name}: {result.detail}")
        failing = [r.name for r in results if not r.ok]
        if failing:
            raise CommandError(f"not ready: {', '.join(failing)}")
