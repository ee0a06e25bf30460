"""Typed request bodies: a frozen dataclass per body, read with :func:`parse`, described by :func:`json_schema`.

One source for both: a field's Python type and its :class:`Rule` (``Annotated[str, Rule(...)]``) decide what
:func:`parse` accepts and what ``make openapi`` writes into the OpenAPI document. :func:`parse` lists every problem
at once, each with its field path, in the relay's own words: never the value it refused (it may be a secret or a
URL).

Why not msgspec or pydantic v2 (measured, see README "Validation"): both are compiled extensions, and Chalice builds
the Lambda package with the wheels of the Python that runs it (cp311 here) while every function runs python3.14, so
either would fail to import in Lambda; msgspec also stops at the first problem and echoes enum values; pydantic adds
about 90 to 140 ms of CPU to a cold start with three models.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from chalicelib.errors import FieldProblem, RequestValidationError

T = TypeVar("T")


@dataclass(frozen=True)
class Rule:
    """A field's limits and its description; ``problem`` replaces the generic text of any problem with it."""

    min_length: int | None = None
    max_length: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    pattern: str | None = None
    format: str | None = None
    unique: bool = False
    description: str | None = None
    problem: str | None = None
    name: str | None = None


_NO_RULE = Rule()
_JSON_TYPES: dict[type, str] = {str: "string", int: "integer", bool: "boolean"}
_TYPE_PROBLEMS: dict[type, str] = {
    str: "must be a string",
    int: "must be a whole number",
    bool: "must be true or false",
}


@dataclass(frozen=True)
class _Field:
    name: str
    key: str
    kind: Any
    rule: Rule
    required: bool
    default: Any


_FIELDS: dict[type, tuple[_Field, ...]] = {}


def _fields(cls: type) -> tuple[_Field, ...]:
    if cls in _FIELDS:
        return _FIELDS[cls]
    hints = get_type_hints(cls, include_extras=True)
    fields = []
    for field in dataclasses.fields(cls):
        kind, rule = hints[field.name], _NO_RULE
        if get_origin(kind) is Annotated:
            kind, rule = get_args(kind)[0], next(a for a in get_args(kind) if isinstance(a, Rule))
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        fields.append(_Field(field.name, rule.name or field.name, kind, rule, required, default))
    _FIELDS[cls] = tuple(fields)
    return _FIELDS[cls]


def parse(cls: type[T], body: Mapping[str, Any]) -> T:
    """``body`` as a ``cls``, or :class:`RequestValidationError` listing every problem (see :func:`read`)."""
    value, problems = read(cls, body)
    if value is None:
        raise RequestValidationError(problems)
    return value


def read(cls: type[T], body: Mapping[str, Any]) -> tuple[T | None, list[FieldProblem]]:
    """``body`` as a ``cls`` and no problems, or None and every problem (unknown fields first), to list with others.

    A ``cls`` with rules across fields has a static ``cross_checks(valid)``: it gets the fields that passed their own
    rules (JSON name to value; an absent field as its default) and returns the further problems, so they are listed
    with the rest. A field's JSON name is its ``Rule.name``, else its Python name; a class's ``schema_extra`` is
    added to its schema.
    """
    fields = _fields(cls)
    known = {field.key for field in fields}
    problems = [FieldProblem(name, "unknown field") for name in sorted(set(body) - known)]
    values: dict[str, Any] = {}
    for field in fields:
        if field.key not in body:
            if field.required:
                problems.append(FieldProblem(field.key, field.rule.problem or "required"))
            values[field.key] = field.default
            continue
        problem = _problem(body[field.key], field.kind, field.rule)
        if problem is not None:
            problems.append(FieldProblem(field.key, field.rule.problem or problem))
        values[field.key] = body[field.key]
    failed = {problem.field for problem in problems}
    checks = getattr(cls, "cross_checks", None)
    if checks is not None:
        problems += checks({key: value for key, value in values.items() if key not in failed})
    if problems:
        return None, problems
    return cls(
        **{f.name: tuple(values[f.key]) if isinstance(values[f.key], list) else values[f.key] for f in fields}
    ), []


def _problem(value: Any, kind: Any, rule: Rule) -> str | None:
    """What is wrong with ``value`` as a ``kind`` under ``rule``, or None."""
    origin, args = get_origin(kind), get_args(kind)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (kind,) = (arg for arg in args if arg is not type(None))
        return _problem(value, kind, rule)
    if origin is Literal:
        return None if isinstance(value, str) and value in args else "must be one of " + ", ".join(args)
    if origin is tuple:
        if not isinstance(value, list):
            return "must be a list"
        if rule.min_length is not None and len(value) < rule.min_length:
            return f"must have at least {rule.min_length} entries"
        if rule.unique and len({repr(entry) for entry in value}) != len(value):
            return "must not repeat an entry"
        return next((p for p in (_problem(entry, args[0], _NO_RULE) for entry in value) if p is not None), None)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        return _TYPE_PROBLEMS[kind]
    if isinstance(value, str):
        low, high = rule.min_length or 0, rule.max_length
        if len(value) < low or (high is not None and len(value) > high):
            return f"must be {low} to {high} characters" if high is not None else f"must be at least {low} characters"
        # JSON Schema's (ECMA's) final $ ends the text; Python's also matches before a final newline.
        if rule.pattern is not None and re.search(re.sub(r"(?<!\\)\$\Z", r"\\Z", rule.pattern), value) is None:
            return "is not in the expected form"
    if isinstance(value, int) and (
        (rule.minimum is not None and value < rule.minimum) or (rule.maximum is not None and value > rule.maximum)
    ):
        return f"must be from {rule.minimum} to {rule.maximum}"
    return None


def json_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema of a body type, as the OpenAPI document publishes it."""
    fields = _fields(cls)
    schema: dict[str, Any] = {"type": "object"}
    required = [field.key for field in fields if field.required]
    if required:
        schema["required"] = required
    schema["properties"] = {field.key: _schema(field) for field in fields}
    schema["additionalProperties"] = False
    schema.update(getattr(cls, "schema_extra", {}))
    return schema


def _schema(field: _Field) -> dict[str, Any]:
    kind, rule = field.kind, field.rule
    if get_origin(kind) in (Union, types.UnionType):
        (kind,) = (arg for arg in get_args(kind) if arg is not type(None))
    schema = _type_schema(kind)
    limits: dict[str, Any] = {
        ("minItems" if schema.get("type") == "array" else "minLength"): rule.min_length,
        "maxLength": rule.max_length,
        "minimum": rule.minimum,
        "maximum": rule.maximum,
        "pattern": rule.pattern,
        "format": rule.format,
        "uniqueItems": rule.unique or None,
    }
    schema.update({key: value for key, value in limits.items() if value is not None})
    if not field.required and field.default is not None:
        schema["default"] = list(field.default) if isinstance(field.default, tuple) else field.default
    if rule.description is not None:
        schema["description"] = rule.description
    return schema


def _type_schema(kind: Any) -> dict[str, Any]:
    if get_origin(kind) is Literal:
        return {"enum": list(get_args(kind))}
    if get_origin(kind) is tuple:
        return {"type": "array", "items": _type_schema(get_args(kind)[0])}
    return {"type": _JSON_TYPES[kind]}
