"""The one error class for mistakes in what the user gave: a file, a flag, a value.

The CLI prints a `UserError` as one line (``medbench: <message>``) and exits 2, without a
traceback (``--debug`` shows it). Anything else that escapes is a bug: exit 1, traceback kept.
A message names the file or value and says what to do. Subclasses (DatasetError, TaskError,
OutputError, OptionError, WeightsError) only say where the problem was found.
"""
from __future__ import annotations


class UserError(ValueError):
    """A problem with the user's input; the message is shown as is, on one line."""
