"""What both replicas' client options share: a choice checked when made, and options kept per meeting."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Options = TypeVar("Options", bound="DataclassInstance")


def check_choices(options: object, choices: Mapping[str, tuple[str, ...]]) -> None:
    """Raises ValueError when a field named in `choices` holds none of its allowed values."""
    for name, allowed in choices.items():
        value = getattr(options, name)
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, not {value!r}")


class PerMeeting(Generic[Options]):
    """Client options per meeting, with defaults for a meeting nobody configured."""

    default_options: Options
    options: dict[str, Options]

    def options_for(self, meeting: str) -> Options:
        return self.options.get(meeting, self.default_options)

    def configure(self, meeting: str, **fields: Any) -> Options:
        """Changes some client options of one meeting (the control API's `options` action)."""
        self.options[meeting] = dataclasses.replace(self.options_for(meeting), **fields)
        return self.options[meeting]
