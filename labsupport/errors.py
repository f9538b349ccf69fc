"""The one error type every model raises for bad input."""

from __future__ import annotations


class LabInputError(ValueError):
    """Bad input to a model: names the field, the value given and what is allowed.

    Widgets catch this and show ``str(error)`` in place; the command line prints it
    without a traceback.
    """

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}: {value!r} is not allowed; {allowed}")
