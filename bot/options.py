"""The error a part raises for one of its own options: each part owns its defaults and rules, and names
the option at fault so that the settings can report it as the setting it came from."""

from __future__ import annotations


class OptionError(ValueError):
    """`option` (a field of the part's options) is invalid: `why` says what to fix."""

    def __init__(self, option: str, why: str) -> None:
        super().__init__(f"{option}: {why}")
        self.option = option
        self.why = why
