"""The `m2d` command: submit code to an M2D portal and follow it from a terminal."""

__version__ = "0.1.0"
