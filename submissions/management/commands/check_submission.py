import dataclasses
from pathlib import Path

from django.core.management.base import BaseCommand
from django.template.defaultfilters import pluralize

from submissions import intake
from submissions.services import intake_limits


class Command(BaseCommand):
    help = "Check a submission zip exactly as the portal's intake does, and print warnings."

    def add_arguments(self, parser):
        parser.add_argument("zip", type=Path)
        parser.add_argument(
            intake.ALLOW_URLS_FLAG,
            action="store_true",
            help="accept URL, version-control and path requirements even where M2D_ALLOW_REQUIREMENT_URLS is off",
        )

    def handle(self, *args, zip: Path, allow_requirement_urls: bool, **options):
        limits = intake_limits()
        if allow_requirement_urls:
            limits = dataclasses.replace(limits, allow_requirement_urls=True)
        try:
            report = intake.inspect_zip(zip, limits)
        except intake.IntakeError as exc:
            self.stderr.write(f"REFUSED: {exc}")
            raise SystemExit(1) from exc
        except OSError as exc:
            self.stderr.write(f"REFUSED: cannot read {zip}: {exc.strerror}")
            raise SystemExit(1) from exc
        where = f" (inside the folder {report.prefix})" if report.prefix else ""
        count = len(report.files)
        self.stdout.write(f"OK: {count} file{pluralize(count)}, {report.uncompressed_bytes} bytes unpacked{where}")
        for warning in report.warnings:
            self.stdout.write(f"warning: {warning}")
