"""How a build ends, and the words that tell its researcher why (a run's: submissions.reasons)."""

from __future__ import annotations

import re

from django.conf import settings

from submissions.reasons import size

from .export_volume import human_size

INSTALL_STEP = "install-requirements"
MISSING_PACKAGE = re.compile(
    r"No matching distribution found for (\S+)"  # pip
    r"|Because (\S+) was not found in the package registry"  # uv
    r"|there is no version of (\S+?)(?:,| and )"  # uv, a version that does not exist
)
STEP_EXIT = re.compile(r"returned a non-zero code: (\d+)")


def build_reason(error: str, build_log: str) -> str:
    """The researcher's words for a failed build: a limit it met, by name, or what pip/uv said."""
    code = int(match.group(1)) if (match := STEP_EXIT.search(error)) else None
    if "(M2D_BUILD_MAX_BYTES)" in error:
        return f"The build was stopped: {error}. Install less, or ask an admin about the limit."
    killed = ("exit status: 137", "signal: 9 ", "SIGKILL", "exit code: -9")
    if code == 137 or any(word in build_log for word in killed):
        return (
            f"The build was stopped: it used all of its {size(settings.M2D_BUILD_MEMORY)} of memory "
            "(M2D_BUILD_MEMORY). A package that compiles from source may need less parallelism, or "
            "a prebuilt wheel."
        )
    too_big = ("File size limit exceeded", "File too large", "exit status: 153", "signal: 25 ", "SIGXFSZ")
    if code == 153 or any(word in build_log for word in too_big):
        return (
            f"The build was stopped: it wrote a file larger than its limit of "
            f"{human_size(settings.M2D_BUILD_MAX_BYTES)} (M2D_BUILD_MAX_BYTES)."
        )
    if "Resource temporarily unavailable" in build_log or "can't start new thread" in build_log:
        return (
            f"The build reached its limit of {settings.M2D_BUILD_PIDS} processes and threads "
            "(M2D_BUILD_PIDS) and could not go on."
        )
    if INSTALL_STEP in error or "pip install" in error:
        missing = sorted({next(g for g in found if g) for found in MISSING_PACKAGE.findall(build_log)})
        what = f" ({', '.join(missing)})" if missing else ""
        return (
            f"Installing requirements.txt failed{what}. Check the package names and versions; "
            "the end of the build log shows the installer's message."
        )
    return f"The image build failed: {error}"
