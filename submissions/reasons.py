"""The words that tell a researcher why their run ended as it did."""

from __future__ import annotations

TRACEBACK = "Traceback (most recent call last):"


def run_reason(exit_code: int, log_tail: str) -> str:
    reason = f"main.py exited with code {exit_code}."
    lines = log_tail.splitlines()
    traceback = last_traceback(lines)
    if traceback:
        reason += "\n" + "\n".join(traceback)
    elif log_tail:
        reason += " The end of its output:\n" + "\n".join(lines[-10:])
    return reason


def last_traceback(lines: list[str]) -> list[str]:
    """The last traceback in the output that ends in its exception line; when processes died
    mid-traceback (a container stops all of them when main.py exits), the last one at all."""
    starts = [i for i, line in enumerate(lines) if line.startswith(TRACEBACK)]
    for start in reversed(starts):
        end = next((i for i in starts if i > start), len(lines))
        for i in range(start + 1, end):
            if lines[i] and not lines[i][0].isspace():  # the exception line: the traceback is whole
                return lines[start : i + 1] if end < len(lines) else lines[start:]
    return lines[starts[-1] :] if starts else []


def size(docker_size: str) -> str:
    """A memory limit as the engine takes it ("4g"), as people read it ("4 GiB")."""
    units = {"k": "KiB", "m": "MiB", "g": "GiB"}
    number, unit = docker_size[:-1], docker_size[-1:].lower()
    return f"{number} {units[unit]}" if unit in units else f"{docker_size} bytes"
