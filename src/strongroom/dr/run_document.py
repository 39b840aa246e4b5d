"""A recorded plan run read back: `plan_run_from_dict`, the inverse of `PlanRun.to_dict()`.

These documents come from the catalog and from repositories, so they are
read as hostile input. The reader walks the dataclasses' own fields, never
the document's shape: its depth is the schema's (four levels), whatever the
document holds. Every value must have the field's type (an int is not a
bool, a float is finite, a time is RFC 3339 with an offset), every list and
string is bounded, and the whole document is bounded in items. A field the
document lacks takes the field's default, so a record made before a field
was added still reads; one without a default is an error. Keys this version
does not know (fields a newer version added) are passed over.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from datetime import datetime
from typing import Any

from strongroom.dr.results import STEP_STATUSES, VERDICTS, PlanRun
from strongroom.errors import IntegrityError

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
MAX_ITEMS = 2_000_000  # values in one document, all levels together
MAX_LIST = 100_000  # items in one list (steps, problems, a problem's files, output lines)
MAX_TEXT = 64 * 1024  # characters in one string
_MODES = ("run", "test")


class RunDocumentError(IntegrityError):
    """A recorded plan run that is not one: a wrong type, a missing field, too big."""


def plan_run_from_dict(doc: Any) -> PlanRun:
    """A PlanRun from its document (a dict, or its JSON text); RunDocumentError names what is wrong."""
    if isinstance(doc, (bytes, str)):
        doc = _parse_json(doc)
    reader = _Reader()
    run = reader.value(PlanRun, doc, "run")
    _check_choices(run)
    return run


def _parse_json(text: bytes | str) -> Any:
    if len(text) > MAX_DOCUMENT_BYTES:
        raise RunDocumentError(f"run record: larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB")
    try:
        return json.loads(text)
    except RecursionError:
        raise RunDocumentError("run record: nested too deeply") from None
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise RunDocumentError(f"run record: not JSON ({e})") from None


def _check_choices(run: PlanRun) -> None:
    if run.mode not in _MODES:
        raise RunDocumentError(f"run record: mode {run.mode[:40]!r} is not one of {', '.join(_MODES)}")
    if run.verdict not in VERDICTS:
        raise RunDocumentError(f"run record: verdict {run.verdict[:40]!r} is not one of {', '.join(VERDICTS)}")
    for step in run.steps:
        if step.status not in STEP_STATUSES:
            raise RunDocumentError(f"run record: step {step.name[:40]!r} has status {step.status[:40]!r}")


MAX_FREE_DEPTH = 8  # nesting of a field typed Any (a free-form JSON value)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


class _Reader:
    """One document's reading, with its item budget."""

    def __init__(self) -> None:
        self.items = 0

    def _count(self, where: str, n: int = 1) -> None:
        self.items += n
        if self.items > MAX_ITEMS:
            raise RunDocumentError(f"run record: more than {MAX_ITEMS} values (at {where})")

    def value(self, kind: Any, value: Any, where: str) -> Any:
        self._count(where)
        origin = typing.get_origin(kind)
        if origin in (typing.Union, types.UnionType):
            options = typing.get_args(kind)
            if value is None:
                if type(None) in options:
                    return None
                raise RunDocumentError(f"run record: {where} is missing (null)")
            inner = [o for o in options if o is not type(None)]
            for option in inner[:-1]:  # int | str and the like: the first type that reads it
                try:
                    return self.value(option, value, where)
                except RunDocumentError:
                    pass
            return self.value(inner[-1], value, where)
        if kind is Any:
            return self.free(value, where)
        if origin is dict:
            key_kind, item_kind = typing.get_args(kind)
            if not isinstance(value, dict) or key_kind is not str:
                raise RunDocumentError(f"run record: {where} is not an object")
            if len(value) > MAX_LIST:
                raise RunDocumentError(f"run record: {where} has more than {MAX_LIST} items")
            return {_scalar(str, k, f"{where} key"): self.value(item_kind, v, f"{where}.{k[:40]}")
                    for k, v in value.items()}
        if origin in (tuple, list):
            item_kind = typing.get_args(kind)[0]
            if not isinstance(value, list):
                raise RunDocumentError(f"run record: {where} is not a list")
            if len(value) > MAX_LIST:
                raise RunDocumentError(f"run record: {where} has more than {MAX_LIST} items")
            items = (self.value(item_kind, item, f"{where}[{i}]") for i, item in enumerate(value))
            return tuple(items) if origin is tuple else list(items)
        if dataclasses.is_dataclass(kind):
            return self.record(kind, value, where)
        return _scalar(kind, value, where)

    def free(self, value: Any, where: str) -> Any:
        """A free-form JSON value: checked level by level (no recursion), bounded in depth and items."""
        pending = [(value, 0)]
        while pending:
            item, depth = pending.pop()
            self._count(where)
            if isinstance(item, (dict, list)):
                if depth >= MAX_FREE_DEPTH:
                    raise RunDocumentError(f"run record: {where} is nested deeper than {MAX_FREE_DEPTH}")
                children = list(item.values()) if isinstance(item, dict) else item
                if isinstance(item, dict) and not all(isinstance(k, str) for k in item):
                    raise RunDocumentError(f"run record: {where} has a key that is not text")
                pending.extend((child, depth + 1) for child in children)
            elif isinstance(item, str):
                _scalar(str, item, where)
            elif isinstance(item, float) and not math.isfinite(item):
                raise RunDocumentError(f"run record: {where} holds a number that is not finite")
            elif item is not None and not isinstance(item, (bool, int, float)):
                raise RunDocumentError(f"run record: {where} is not a JSON value")
        return value

    def record(self, cls: type, doc: Any, where: str) -> Any:
        if not isinstance(doc, dict):
            raise RunDocumentError(f"run record: {where} is not an object")
        hints = _hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in doc:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise RunDocumentError(f"run record: {where} has no {f.name}")
                continue
            values[f.name] = self.value(hints[f.name], doc[f.name], f"{where}.{f.name}")
        self._count(where, max(0, len(doc) - len(values)))  # unknown keys still count against the budget
        return cls(**values)


def _scalar(kind: Any, value: Any, where: str) -> Any:
    if kind is str:
        if not isinstance(value, str):
            raise RunDocumentError(f"run record: {where} is not text")
        if len(value) > MAX_TEXT:
            raise RunDocumentError(f"run record: {where} is longer than {MAX_TEXT} characters")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise RunDocumentError(f"run record: {where} is not true or false")
        return value
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise RunDocumentError(f"run record: {where} is not an integer")
        if not -(2 ** 63) <= value < 2 ** 63:
            raise RunDocumentError(f"run record: {where} is out of range")
        return value
    if kind is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise RunDocumentError(f"run record: {where} is not a number")
        return float(value)
    if kind is datetime:
        return _time(value, where)
    raise RunDocumentError(f"run record: {where} has a type this version cannot read")


def _time(value: Any, where: str) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise RunDocumentError(f"run record: {where} is not a time")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RunDocumentError(f"run record: {where} is not a time") from None
    if when.tzinfo is None:
        raise RunDocumentError(f"run record: {where} has no offset")
    return when


__all__ = ["RunDocumentError", "plan_run_from_dict"]
