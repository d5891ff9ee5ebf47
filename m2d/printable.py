"""Text from a terminal, made fit to show on a page, in a mail or in a JSON field.

Build and run logs carry what pip, Docker and the researcher's code wrote to a terminal: colour
codes (ESC [91m), window titles and links (ESC ] … BEL), carriage-return progress bars. Shown
anywhere else they are noise ("ESC [91mERROR"), so they are taken out where a log tail is kept
and again where one is shown. Newlines and tabs stay.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(
    r"""
      \x1b\[ [0-?]* [ -/]* [@-~]              # CSI: colours, cursor moves, erasing
    | \x1b\] .*? (?:\x07|\x1b\\|$)             # OSC: titles, links; ends at BEL or ST
    | \x1b [PX^_] .*? (?:\x1b\\|$)             # DCS, SOS, PM, APC strings
    | \x1b [ -/]* [0-~]?                       # other escapes (charset choice, keypad mode)
    | \x9b [0-?]* [ -/]* [@-~]                 # CSI in its one-character form
    | [\x00-\x08\x0b-\x1f\x7f-\x9f]            # other control characters
    """,
    re.VERBOSE | re.DOTALL,
)


def printable(text: str) -> str:
    """`text` without terminal escape sequences or control characters but newline and tab."""
    return _CONTROL.sub("", text.replace("\r\n", "\n"))
