"""Typed, documented explainer parameters.

Every explainer declares its parameters as a frozen dataclass derived from
:class:`ExplainerParams`, one field per parameter, each made with :func:`param`: a default,
a one-line documentation (shown by :meth:`ExplainerParams.describe` and in error messages, as
captum documents every argument of ``attribute``) and optional bounds or choices. The class is
the single definition of what an explainer accepts:

>>> from cfviewer.explain.latentshift import LatentShiftParams
>>> print(LatentShiftParams.describe())            # doctest: +SKIP
>>> LatentShiftParams.build("latentshift", {"n_frames": "12"}).n_frames
12

:meth:`ExplainerParams.build` turns a mapping (keyword arguments, ``--param KEY=VALUE``
strings from the command line, JSON values stored in a study's ``arm.methods``) into an
instance. It raises :class:`ExplainerParameterError` naming the parameter, the explainer and
the valid names when a name is unknown (with a "did you mean" for typos), and naming the
expected type and the field's documentation when a value has the wrong type or is out of
range. Parameters an explainer no longer has are listed in ``retired`` (name -> why): they are
accepted so that stored study configurations still load, ignored, and reported by a
:class:`RetiredParameterWarning`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping, Union

import numpy as np

from cfviewer.errors import CfviewerError


class ExplainerParameterError(CfviewerError):
    """A parameter given to an explainer is unknown or has an invalid value."""


class RetiredParameterWarning(UserWarning):
    """A parameter the explainer no longer has was given (accepted and ignored)."""


def param(
    default: Any,
    doc: str,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
) -> Any:
    """A parameter field: ``default``, its documentation, and optional bounds (``minimum`` <=
    value <= ``maximum``, ``above`` < value). Choices are given by a ``Literal[...]`` type."""
    meta = {"doc": doc, "minimum": minimum, "above": above, "maximum": maximum}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class _BadType(Exception):
    pass


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(v) for v in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "None"
    if origin is tuple:
        return "[" + ", ".join(_type_name(a) for a in typing.get_args(tp)) + "]"
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any) -> Any:
    """``value`` as type ``tp`` (strings from the command line are parsed), or _BadType."""
    if tp is Any:  # untyped (legacy ``defaults`` of None): JSON strings are parsed
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return value
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none")):
            if type(None) in args:
                return None
            raise _BadType()
        for arm in args:
            if arm is type(None):
                continue
            try:
                return _coerce(arm, value)
            except _BadType:
                continue
        raise _BadType()
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices and type(value) is type(choices[choices.index(value)]):
            return value
        raise _BadType()
    if tp is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, (int, np.integer)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _BadType()
    if tp is str:
        if isinstance(value, str):
            return value
        raise _BadType()
    if isinstance(value, str) and tp in (int, float, dict) or origin is tuple and isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise _BadType() from None
    if tp is int:
        numeric = isinstance(value, (int, float, np.integer, np.floating))
        if isinstance(value, (bool, np.bool_)) or not numeric or not float(value).is_integer():
            raise _BadType()
        return int(value)
    if tp is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise _BadType()
        return float(value)
    if tp is dict or origin is dict:
        if isinstance(value, Mapping):
            return dict(value)
        raise _BadType()
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise _BadType()
        return tuple(_coerce(a, v) for a, v in zip(args, value))
    raise TypeError(f"unsupported parameter type {tp!r}")


@dataclass(frozen=True)
class ExplainerParams:
    """Base class of every explainer's parameters (module docstring). Subclasses are frozen
    dataclasses whose fields are made with :func:`param`; they may override :meth:`check`
    for rules that involve several fields."""

    retired: ClassVar[dict[str, str]] = {}
    """Names the explainer no longer has -> why; accepted, ignored, warned about."""

    # ------------------------------------------------------------------ construction
    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return cls().as_dict()

    @classmethod
    def build(cls, explainer: str, values: Mapping[str, Any]) -> "ExplainerParams":
        """An instance from ``values`` (coerced to each field's type, then checked)."""
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        ignored = []
        for key, value in values.items():
            if key not in fields:
                if key in cls.retired:
                    ignored.append(key)
                    continue
                raise ExplainerParameterError(cls._unknown_message(explainer, key))
            try:
                kwargs[key] = _coerce(hints[key], value)
            except _BadType:
                raise ExplainerParameterError(
                    f"explainer {explainer!r}: parameter {key}={value!r} is not "
                    f"{_type_name(hints[key])} ({fields[key].metadata.get('doc', '')}; default "
                    f"{_default_of(fields[key])!r}); its parameters are: {', '.join(fields)}"
                ) from None
        for key in ignored:
            warnings.warn(
                f"explainer {explainer!r}: parameter {key}={values[key]!r} is retired and ignored: "
                f"{cls.retired[key]}", RetiredParameterWarning, stacklevel=4,
            )
        obj = cls(**kwargs)
        for f in dataclasses.fields(cls):
            why = _bound_violation(f, getattr(obj, f.name))
            if why:
                raise obj.bad(explainer, f.name, why)
        obj.check(explainer)
        return obj

    @classmethod
    def _unknown_message(cls, explainer: str, key: str) -> str:
        names = cls.names()
        close = difflib.get_close_matches(key, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (
            f"explainer {explainer!r} has no parameter {key!r}{hint}; its parameters are: "
            f"{', '.join(names) or '(none)'} (see {cls.__qualname__}.describe())"
        )

    def check(self, explainer: str) -> None:
        """Rules involving several fields; raise ``self.bad(explainer, name, why)``."""

    def bad(self, explainer: str, key: str, why: str) -> ExplainerParameterError:
        f = {f.name: f for f in dataclasses.fields(self)}.get(key)
        doc = f" ({f.metadata['doc']})" if f is not None and f.metadata.get("doc") else ""
        return ExplainerParameterError(
            f"explainer {explainer!r}: parameter {key}={getattr(self, key, None)!r} {why}{doc}"
        )

    # ------------------------------------------------------------------ views
    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-shaped values (tuples as lists), in field order."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def subset(self, other: type["ExplainerParams"]) -> dict[str, Any]:
        """The values of the fields ``other`` also has (e.g. Latent Shift's inside another)."""
        mine = self.as_dict()
        return {k: mine[k] for k in other.names() if k in mine}

    @classmethod
    def describe(cls) -> str:
        """One line per parameter: name, type, default, documentation (captum's style)."""
        hints = typing.get_type_hints(cls)
        lines = []
        for f in dataclasses.fields(cls):
            lines.append(f"{f.name} ({_type_name(hints[f.name])}, default {_default_of(f)!r}): "
                         f"{f.metadata.get('doc', '')}")
        return "\n".join(lines)


def params_from_defaults(name: str, defaults: Mapping[str, Any]) -> type[ExplainerParams]:
    """A params class from a plain ``{name: default}`` dict (for explainers that still declare
    ``defaults``): each field typed by its default (``None``: any value), undocumented."""
    fields = []
    for key, value in defaults.items():
        tp: Any = Any if value is None else type(value)
        if tp not in (bool, int, float, str, dict, list) and tp is not Any:
            tp = Any
        if tp is list:
            tp = Any
        fields.append((key, tp, param(value, "")))
    return dataclasses.make_dataclass(name, fields, bases=(ExplainerParams,), frozen=True)


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _bound_violation(f: dataclasses.Field, value: Any) -> str | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    m = f.metadata
    if m.get("minimum") is not None and value < m["minimum"]:
        return f"must be >= {m['minimum']:g}"
    if m.get("above") is not None and value <= m["above"]:
        return f"must be > {m['above']:g}"
    if m.get("maximum") is not None and value > m["maximum"]:
        return f"must be <= {m['maximum']:g}"
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


__all__ = [
    "ExplainerParameterError",
    "ExplainerParams",
    "RetiredParameterWarning",
    "param",
    "params_from_defaults",
]
