"""Where the portal is and who you are: M2D_URL and M2D_TOKEN, else ~/.config/m2d/config.toml."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path


class ConfigError(RuntimeError):
    pass


@dataclass(frozen=True)
class Config:
    url: str
    token: str


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "m2d" / "config.toml"


def load() -> Config:
    path = config_path()
    stored: dict = {}
    if path.is_file():
        try:
            stored = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    url = os.environ.get("M2D_URL") or stored.get("url", "")
    token = os.environ.get("M2D_TOKEN") or stored.get("token", "")
    if not url or not token:
        raise ConfigError(
            "Tell m2d where your portal is and who you are: set M2D_URL and M2D_TOKEN, or write\n"
            f'  url = "https://m2d.hospital.example"\n  token = "<your API token>"\n'
            f"to {path}. Create the token on your account page in the portal."
        )
    return Config(url=url.rstrip("/"), token=token)
