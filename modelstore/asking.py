"""The command lines that ask a deployed model: `m2d predict` and curl on /predictions, with one
file per input the model card declares. Shown on the model's page and printed by the demo."""

from __future__ import annotations

import shlex

IMAGE_SUFFIX = {"image/png": ".png", "application/x-npy": ".npy"}


def placeholder_files(card: dict) -> dict[str, str]:
    """A file name per input, in the first format the card accepts (lcc.png, features.npy)."""
    files = {}
    for spec in card.get("inputs") or []:
        formats = spec.get("formats") or ([spec["format"]] if spec.get("format") else [])
        suffix = next((IMAGE_SUFFIX[f] for f in formats if f in IMAGE_SUFFIX), "")
        files[spec["name"]] = f"{spec['name'].lower()}{suffix}"
    return files


def ask_lines(
    *,
    name: str,
    portal: str,
    username: str,
    token: str,
    files: dict[str, str],
    version: int | None = None,
    m2d: str = "m2d",
) -> dict[str, str]:
    """`files` maps each input name to a path. A one-input model takes its file as the body.
    Without `version`, the lines ask the model's default version."""
    portal = portal.rstrip("/")
    url = f"{portal}/predictions/{name}" + (f"/{version}" if version else "")
    command = f"{m2d} predict {name}" + (f" --version {version}" if version else "")
    if len(files) == 1:
        (path,) = files.values()
        m2d = f"{command} {shlex.quote(path)}"
        curl = f"curl --user {username}:{token} {url} -T {shlex.quote(path)}"
    else:
        m2d = f"{command} " + " ".join(f"{k}={shlex.quote(v)}" for k, v in files.items())
        curl = f"curl --user {username}:{token} {url} " + " ".join(
            f"-F {k}=@{shlex.quote(v)}" for k, v in files.items()
        )
    return {
        "env": f"export M2D_URL={portal} M2D_TOKEN={token}",
        "m2d": m2d,
        "curl": curl,
    }
