"""Errors a user can cause. Each message names the input and says how to fix it."""

from __future__ import annotations

from pathlib import Path


class CfviewerError(Exception):
    """Base class of every error meant to be shown to a person (CLI prints it, pages show it)."""


class ImageLoadError(CfviewerError):
    """A file could not be read as a radiograph."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot load image {self.path!s}: {reason}")


class UnknownPathologyError(CfviewerError, KeyError):
    def __init__(self, name: str, known: list[str] | tuple[str, ...]):
        self.name = name
        self.known = list(known)
        super().__init__(
            f"unknown pathology {name!r}: this model predicts {', '.join(self.known)}"
        )

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class BundleError(CfviewerError):
    """A model bundle directory is missing, incomplete or incompatible."""


class UnknownExplainerError(CfviewerError, KeyError):
    def __init__(self, name: str, known: list[str]):
        self.name = name
        self.known = known
        super().__init__(f"unknown explainer {name!r}: choose one of {', '.join(known)}")

    def __str__(self) -> str:
        return self.args[0]


class ImportValidationError(CfviewerError):
    """An import was refused; nothing was written. `problems` lists every bad file/row."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        head = "; ".join(self.problems[:5])
        more = f" (+{len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(f"import refused, nothing was imported: {head}{more}")
