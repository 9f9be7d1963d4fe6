"""The one error class for mistakes in what the user gave: a file, a flag, a value.

The CLI prints a `UserError` as one line (``medbench: <message>``) and exits 2, without a
traceback (``--debug`` shows it). Anything else that escapes is a bug: exit 1, traceback kept.
A message names the file or value and says what to do. Subclasses (DatasetError, TaskError,
OutputError, OptionError, WeightsError, StoreError, UnknownPluginError) only say where the
problem was found. `is_user_error` also accepts the few older error classes that are not yet
subclasses (a missing file, a dataset or output folder that fails validation)::

    try: ...
    except Exception as e:
        code = 2 if is_user_error(e) else 1
"""
from __future__ import annotations


class UserError(ValueError):
    """A problem with the user's input; the message is shown as is, on one line."""


class UnknownPluginError(UserError, KeyError):
    """An unknown task, model, dataset, metric family, extractor ... name. Still a KeyError (callers
    that skip a family on KeyError keep working) but printed without KeyError's repr quotes."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _older_user_errors() -> tuple[type[BaseException], ...]:
    """Error classes of other modules that describe user input (imported lazily: they pull in PIL etc.)."""
    found: list[type[BaseException]] = [FileNotFoundError]
    for module, name in (("medbench.data.validate", "DatasetError"), ("medbench.outputs", "OutputError"),
                         ("medbench.tasks", "TaskError")):
        try:
            found.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def is_user_error(exc: BaseException) -> bool:
    """True for a mistake in the user's input (exit 2), False for a bug in medbench (exit 1)."""
    return isinstance(exc, (UserError, *_older_user_errors()))


def one_line(exc: BaseException) -> str:
    """The error's message on one line (continuation lines joined with '; ')."""
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines)
