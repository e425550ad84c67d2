"""The one exception hierarchy of survpgc.

Every error raised on purpose by survpgc derives from :class:`SurvpgcError`, so callers can catch
everything the toolkit reports with one ``except`` clause.  Subclasses say *what kind* of problem it is;
messages say *where* (file, row, column, argument) and *what to do*.

This module imports nothing else from survpgc.
"""

from __future__ import annotations

__all__ = [
    "BusyError",
    "ConfigError",
    "DataError",
    "EmptyInputError",
    "InputError",
    "Interrupted",
    "InvalidEventError",
    "InvalidRiskError",
    "InvalidTimeError",
    "LengthMismatchError",
    "NoComparablePairError",
    "NoEventError",
    "NotFittedError",
    "SurvpgcError",
    "TimeRangeError",
    "UnknownNameError",
]


class SurvpgcError(Exception):
    """Base class of every error survpgc raises on purpose."""


class InputError(SurvpgcError, ValueError):
    """An argument has the wrong shape, type or value."""


class LengthMismatchError(InputError):
    """Arrays that describe the same cases have different lengths."""


class EmptyInputError(InputError):
    """An input holds no cases at all."""


class InvalidTimeError(InputError):
    """A survival time is missing (NaN), infinite or not strictly positive."""


class InvalidEventError(InputError):
    """An event indicator is not one of 0/1/True/False."""


class InvalidRiskError(InputError):
    """A risk score (or survival probability) is NaN or infinite."""


class NoEventError(InputError):
    """A metric or statistic needs at least one observed event and there is none."""


class NoComparablePairError(InputError):
    """A concordance-type metric found no comparable pair of cases."""


class TimeRangeError(InputError):
    """Evaluation times lie outside the range the data can support."""


class NotFittedError(SurvpgcError, RuntimeError):
    """An estimator was used before ``fit``."""


class ConfigError(SurvpgcError, ValueError):
    """A configuration value is missing or invalid."""


class DataError(SurvpgcError, ValueError):
    """A data file or table is malformed (the message names file, row and column)."""


class BusyError(SurvpgcError, RuntimeError):
    """Another process holds the lock of an output folder (the message names its pid, host and command)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during a long command, with a message saying what was finished and how to resume.

    It derives from :class:`KeyboardInterrupt` (not from :class:`SurvpgcError`), so ``except Exception`` never
    swallows it; the CLI prints the message and exits with 130, the shell's code for SIGINT.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UnknownNameError(ConfigError, InputError):
    """A name looked up in a registry (model, patch encoder, text encoder) is not registered.

    The message names the kind of registry, the name asked for, close matches when there are any, and every
    available name. It is a :class:`ConfigError` (names usually come from a run configuration) and, for
    callers that catch bad arguments, an :class:`InputError` too.
    """

    def __init__(self, kind: str, name: object, available: list[str] | tuple[str, ...], hint: str = "") -> None:
        import difflib

        self.kind = str(kind)
        self.name = str(name)
        self.available = sorted(str(a) for a in available)
        self.hint = str(hint)
        close = difflib.get_close_matches(self.name.strip().lower(), self.available, n=3, cutoff=0.6)
        message = f"unknown {self.kind} {self.name!r}"
        if close:
            message += f" (did you mean {' or '.join(repr(c) for c in close)}?)"
        message += f"; available: {', '.join(self.available) or '(none)'}"
        super().__init__(message + (f" {self.hint}" if self.hint else ""))

    def __reduce__(self) -> tuple[type[UnknownNameError], tuple[str, str, list[str], str]]:
        return type(self), (self.kind, self.name, self.available, self.hint)
