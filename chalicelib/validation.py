"""Typed request bodies: a frozen dataclass per body, read with :func:`parse`, described by :func:`json_schema`.

One source for both: a field's Python type and its :class:`Rule` (``Annotated[str, Rule(...)]``) decide what
:func:`parse` accepts and what ``make openapi`` writes into the OpenAPI document. :func:`parse` lists every problem
at once, each with its field path, in the relay's own words: never the value it refused (it may be a secret or a
URL).

A field may be a ``str``, ``int``, ``bool``, a ``Literal`` of strings, a ``tuple[X, ...]`` (a JSON list), a
``dict[K, V]`` (a JSON object of any keys; a bad key or value is named ``field.key``) or another such dataclass (a
JSON object of fixed keys, whose unknown keys are listed at its own path; a list of them names an entry's problems
``field[index]``); an ``Annotated`` rule may sit at any level, so a dict's keys and values carry their own. A class
whose ``ignores_unknown_keys`` is true lets unknown keys pass (a payload another service extends, such as Connect's
chat items), and one whose ``null_means_absent`` is true reads a null as an absent field.

:func:`read_environment` reads the same types from environment variables' text (the settings).

Why not msgspec or pydantic v2 (measured, see README "Validation"): both are compiled extensions, and Chalice builds
the Lambda package with the wheels of the Python that runs it (cp311 here) while every function runs python3.14, so
either would fail to import in Lambda; msgspec also stops at the first problem and echoes enum values; pydantic adds
about 90 to 140 ms of CPU to a cold start with three models.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from chalicelib.errors import FieldProblem, RequestValidationError

T = TypeVar("T")


@dataclass(frozen=True)
class Rule:
    """A value's limits and its description; ``problem`` replaces the generic text of any problem with it.

    ``non_blank``: a string must hold more than whitespace. ``contains``: a list must hold this entry. ``missing``
    replaces the text of an absent required field (else ``problem``, else "required"). ``min_length`` and
    ``max_length`` count a list's entries too.
    """

    min_length: int | None = None
    max_length: int | None = None
    minimum: float | None = None
    exclusive_minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    format: str | None = None
    unique: bool = False
    non_blank: bool = False
    contains: str | None = None
    description: str | None = None
    problem: str | None = None
    missing: str | None = None
    name: str | None = None


_NO_RULE = Rule()
_JSON_TYPES: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_TYPE_PROBLEMS: dict[type, str] = {
    str: "must be a string",
    int: "must be a whole number",
    float: "must be a number",
    bool: "must be true or false",
}
_ABSENT = object()
_NOT_UNICODE = "must be valid Unicode text (a lone surrogate such as \\ud800 has no UTF-8 form)"


@dataclass(frozen=True, slots=True)
class _Kind:
    """A field's type read once per class, so :func:`read` does not inspect ``typing`` objects on every value."""

    kind: Any
    rule: Rule
    optional: bool
    shape: str  # "object", "dict", "list" or "scalar"
    entries: tuple[_Kind, ...]  # a list's entry, or a dict's key and value
    literal: tuple[str, ...] | None
    pattern: re.Pattern[str] | None


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    key: str
    kind: Any
    rule: Rule
    required: bool
    default: Any
    read_as: _Kind


@dataclass(frozen=True, slots=True)
class _Shape:
    fields: tuple[_Field, ...]
    # Per field: key, name, shortest and longest length (longest -1 unless a string or a Literal), its further test
    # (a pattern's search, a Literal's words), field.
    text_fast_path: tuple[tuple[str, str, int, int, Callable[[str], object] | None, _Field], ...]
    keys: frozenset[str]
    cross_checks: Any
    ignores_unknown_keys: bool
    null_means_absent: bool
    # Made without its __init__ (see _object): a dataclass whose __init__ only sets its fields.
    direct: bool


_SHAPES: dict[type, _Shape] = {}


def _fields(cls: type) -> tuple[_Field, ...]:
    return _shape(cls).fields


def _shape(cls: type) -> _Shape:
    if cls in _SHAPES:
        return _SHAPES[cls]
    hints = get_type_hints(cls, include_extras=True)
    fields = []
    for field in dataclasses.fields(cls):
        kind, rule = _unwrap(hints[field.name], _NO_RULE)
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        fields.append(_Field(field.name, rule.name or field.name, kind, rule, required, default, _kind(kind, rule)))
    _SHAPES[cls] = _Shape(
        tuple(fields),
        tuple(_text_fast_path(field) for field in fields),
        frozenset(field.key for field in fields),
        getattr(cls, "cross_checks", None),
        getattr(cls, "ignores_unknown_keys", False),
        getattr(cls, "null_means_absent", False),
        not hasattr(cls, "__post_init__")
        and "__slots__" not in vars(cls)
        and all(field.init for field in dataclasses.fields(cls)),
    )
    return _SHAPES[cls]


def _text_fast_path(field: _Field) -> tuple[str, str, int, int, Callable[[str], object] | None, _Field]:
    kind = field.read_as
    if kind.literal is not None:
        return field.key, field.name, 0, sys.maxsize, frozenset(kind.literal).__contains__, field
    if kind.kind is not str or kind.rule.non_blank:
        return field.key, field.name, 0, -1, None, field
    test = kind.pattern.search if kind.pattern is not None else None
    return field.key, field.name, kind.rule.min_length or 0, kind.rule.max_length or sys.maxsize, test, field


def _kind(kind: Any, rule: Rule) -> _Kind:
    kind, rule = _unwrap(kind, rule)
    optional = get_origin(kind) in (Union, types.UnionType) and type(None) in get_args(kind)
    kind, rule = _without_none(kind, rule)
    origin, args = get_origin(kind), get_args(kind)
    entries: tuple[_Kind, ...] = ()
    if dataclasses.is_dataclass(kind):
        shape = "object"
    elif origin is dict:
        shape, entries = "dict", (_kind(args[0], _NO_RULE), _kind(args[1], _NO_RULE))
    elif origin is tuple:
        shape, entries = "list", (_kind(args[0], _NO_RULE),)
    else:
        shape = "scalar"
    # JSON Schema's (ECMA's) final $ ends the text; Python's also matches before a final newline.
    pattern = re.compile(re.sub(r"(?<!\\)\$\Z", r"\\Z", rule.pattern)) if rule.pattern is not None else None
    return _Kind(kind, rule, optional, shape, entries, args if origin is Literal else None, pattern)


def _unwrap(kind: Any, rule: Rule) -> tuple[Any, Rule]:
    """``kind`` without its ``Annotated``, and the rule it carries (else ``rule``)."""
    if get_origin(kind) is Annotated:
        return get_args(kind)[0], next(a for a in get_args(kind) if isinstance(a, Rule))
    return kind, rule


def _without_none(kind: Any, rule: Rule) -> tuple[Any, Rule]:
    """An optional ``kind``'s other type and its rule (else ``kind`` and ``rule``)."""
    if get_origin(kind) in (Union, types.UnionType):
        (kind,) = (arg for arg in get_args(kind) if arg is not type(None))
        return _unwrap(kind, rule)
    return kind, rule


def parse(cls: type[T], body: Mapping[str, Any]) -> T:
    """``body`` as a ``cls``, or :class:`RequestValidationError` listing every problem (see :func:`read`)."""
    value, problems = read(cls, body)
    if value is None:
        raise RequestValidationError(problems)
    return value


def read(cls: type[T], body: Mapping[str, Any]) -> tuple[T | None, list[FieldProblem]]:
    """``body`` as a ``cls`` and no problems, or None and every problem (unknown fields first), to list with others.

    A ``cls`` with rules across fields has a static ``cross_checks(valid)``: it gets the fields that passed their own
    rules (JSON name to JSON value; an absent field as its default) and returns the further problems, so they are
    listed with the rest (a nested type's are named under its path). A field's JSON name is its ``Rule.name``, else
    its Python name; a class's ``schema_extra`` is added to its schema.
    """
    value, problems = _object(cls, body, "")
    return (value, []) if not problems else (None, problems)


def read_environment(cls: type[T], environ: Mapping[str, str]) -> tuple[T | None, list[FieldProblem]]:
    """The variables ``cls`` declares (each field named as its variable) read from ``environ``, as :func:`read` does.

    An unset or blank variable takes its field's default. A value's text is read as its field's type: a whole
    number; ``true`` or ``false``, and a ``Literal``'s words, in any case; a comma-separated list (blank entries
    dropped: a list of none is unset); a JSON object for a ``dict``. A problem inside a variable (a list's entry, a
    JSON key or value) is the variable's own, in its ``Rule.problem``: no part of a value is named or quoted.
    """
    body = {}
    for field in _fields(cls):
        text = environ.get(field.key, "").strip()
        value = _from_text(text, field.kind) if text else None
        if value is not None:
            body[field.key] = value
    value, problems = read(cls, body)
    rules = {field.key: field.rule for field in _fields(cls)}
    named = []
    for problem in problems:
        variable = problem.field.split(".", 1)[0]
        text = problem.problem if problem.field == variable else rules[variable].problem or "is invalid"
        named.append(FieldProblem(variable, text))
    return value, list(dict.fromkeys(named))


def _from_text(text: str, kind: Any) -> Any:
    """A variable's ``text`` as a ``kind`` when it reads as one (else the text, which :func:`read` then refuses), or
    None for a list of no entries."""
    kind = _without_none(*_unwrap(kind, _NO_RULE))[0]
    origin = get_origin(kind)
    if origin is tuple:
        return [part.strip() for part in text.split(",") if part.strip()] or None
    if origin is dict:
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            return text
    if origin is Literal:
        return next((word for word in get_args(kind) if word.lower() == text.lower()), text)
    if kind is bool:
        return {"true": True, "false": False}.get(text.lower(), text)
    if kind is int:
        try:
            return int(text)
        except ValueError:
            return text
    return text


def _object(cls: type[T], body: Mapping[str, Any], path: str) -> tuple[T, list[FieldProblem]]:
    shape = _SHAPES.get(cls) or _shape(cls)
    problems = _unknown_keys(shape, body, path)
    values: dict[str, Any] = {}
    valid: dict[str, Any] = {}
    get, null_means_absent, checked = body.get, shape.null_means_absent, shape.cross_checks is not None
    # The common case first, with no call: an ASCII string within its limits (the chat items' hot path).
    for key, name, low, high, test, field in shape.text_fast_path:
        value = get(key, _ABSENT)
        if value.__class__ is str and low <= len(value) <= high and value.isascii() and (test is None or test(value)):
            values[name] = value
            if checked:  # a type without cross checks does not pay for the copy
                valid[key] = value
            continue
        if value is None and null_means_absent:
            value = _ABSENT
        if value is _ABSENT:
            if field.required:
                where = f"{path}.{field.key}" if path else field.key
                problems.append(FieldProblem(where, field.rule.missing or field.rule.problem or "required"))
            else:
                values[field.name] = valid[field.key] = field.default
            continue
        read_value, found = _value(value, field.read_as, f"{path}.{field.key}" if path else field.key)
        if found:
            problems += found
        else:
            values[field.name], valid[field.key] = read_value, value
    if shape.cross_checks is not None:
        found = shape.cross_checks(valid)
        problems += [FieldProblem(f"{path}.{p.field}", p.problem) for p in found] if path else found
    return (_make(cls, shape, values) if not problems else None), problems  # type: ignore[return-value]


def _unknown_keys(shape: _Shape, body: Mapping[str, Any], path: str) -> list[FieldProblem]:
    if shape.ignores_unknown_keys or shape.keys.issuperset(body):
        return []
    unknown = sorted(set(body) - shape.keys)
    if not path:
        return [FieldProblem(name, "unknown field") for name in unknown]
    keys = [field.key for field in shape.fields]
    expected = ", ".join(keys[:-1]) + " and " + keys[-1] if len(keys) > 1 else keys[0]
    return [FieldProblem(path, f"unknown keys {', '.join(unknown)} (expected {expected})")]


def _make(cls: type[T], shape: _Shape, values: dict[str, Any]) -> T:
    if not shape.direct:
        return cls(**values)
    # A frozen dataclass's __init__ sets each field through object.__setattr__: 2.9 us for a ChatItem's 15 fields,
    # a fifth of reading one chat item. The values are read and complete, so they go into the instance at once.
    value = object.__new__(cls)
    value.__dict__.update(values)
    return value


def _value(value: Any, kind: _Kind, where: str) -> tuple[Any, list[FieldProblem]]:
    """``value`` read as a ``kind``, or every problem with it (its ``rule.problem`` replaces those at ``where``
    itself, not those of its entries)."""
    if value is None and kind.optional:
        return None, []
    if kind.shape == "scalar":
        problem = _problem(value, kind)
        return value, [] if problem is None else [FieldProblem(where, kind.rule.problem or problem)]
    value, problems = _read_value(value, kind, where)
    if problems and kind.rule.problem is not None:
        problems = [FieldProblem(p.field, kind.rule.problem) if p.field == where else p for p in problems]
    return value, problems


def _read_value(value: Any, kind: _Kind, where: str) -> tuple[Any, list[FieldProblem]]:
    if kind.shape == "list":
        return _list(value, kind, where)
    if not isinstance(value, dict):
        return None, [FieldProblem(where, "must be a JSON object")]
    if kind.shape == "dict":
        return _mapping(value, kind.entries, where)
    return _object(kind.kind, value, where)


def _mapping(value: dict[Any, Any], entries: tuple[_Kind, ...], where: str) -> tuple[Any, list[FieldProblem]]:
    keys, items = entries
    if items.kind is Any and keys.kind is str and keys.rule is _NO_RULE and all(key.isascii() for key in value):
        return dict(value), []  # JSON's keys are strings: nothing to check (a message's metadata, say)
    mapped, problems = {}, []
    for key, item in value.items():
        _, key_problems = _value(key, entries[0], f"{where}.{key}")
        read_item, item_problems = _value(item, entries[1], f"{where}.{key}")
        problems += key_problems + item_problems
        mapped[key] = read_item
    return mapped, problems


def _list(value: Any, kind: _Kind, where: str) -> tuple[Any, list[FieldProblem]]:
    """A list's entries; an object entry's problems are named ``where[index]``, a scalar entry's first at ``where``."""
    if not isinstance(value, list):
        return None, [FieldProblem(where, "must be a list")]
    rule, (entry,) = kind.rule, kind.entries
    low, high = rule.min_length or 0, rule.max_length
    if len(value) < low or (high is not None and len(value) > high):
        entries = f"{low} to {high} entries" if high is not None else f"at least {low} entries"
        return None, [FieldProblem(where, f"must have {entries}")]
    if rule.unique and len({repr(item) for item in value}) != len(value):
        return None, [FieldProblem(where, "must not repeat an entry")]
    if entry.shape == "object":
        read_entries, problems = [], []
        for index, item in enumerate(value):
            read_entry, found = _read_value(item, entry, f"{where}[{index}]")
            read_entries.append(read_entry)
            problems += found
        return tuple(read_entries), problems
    problem = next((p for p in (_problem(item, entry) for item in value) if p is not None), None)
    if problem is None and rule.contains is not None and rule.contains not in value:
        problem = f"must include {rule.contains}"
    return tuple(value), [FieldProblem(where, problem)] if problem is not None else []


def _problem(value: Any, kind: _Kind) -> str | None:
    """What is wrong with ``value`` as a scalar ``kind`` under its rule, or None."""
    rule, scalar = kind.rule, kind.kind
    if scalar is str:
        # The common case first: a string field (the chat items' hot path reads about a dozen per item).
        return _text_problem(value, kind) if isinstance(value, str) else _TYPE_PROBLEMS[str]
    if scalar is Any:
        return None
    if kind.literal is not None:
        allowed = kind.literal
        if isinstance(value, str) and value in allowed:
            return None
        return f"must be {allowed[0]}" if len(allowed) == 1 else "must be one of " + ", ".join(allowed)
    if scalar is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (
        not isinstance(value, scalar)
        or (scalar is int and isinstance(value, bool))
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        return _TYPE_PROBLEMS[scalar]
    if isinstance(value, int | float) and not _within(value, rule):
        if rule.minimum is not None and rule.maximum is not None:
            return f"must be from {rule.minimum:g} to {rule.maximum:g}"
        bounds = [
            f"more than {rule.exclusive_minimum:g}" if rule.exclusive_minimum is not None else "",
            f"at least {rule.minimum:g}" if rule.minimum is not None else "",
            f"at most {rule.maximum:g}" if rule.maximum is not None else "",
        ]
        return "must be " + " and ".join(bound for bound in bounds if bound)
    return None


def _text_problem(value: str, kind: _Kind) -> str | None:
    rule = kind.rule
    low, high = rule.min_length or 0, rule.max_length
    if len(value) < low or (high is not None and len(value) > high):
        return f"must be {low} to {high} characters" if high is not None else f"must be at least {low} characters"
    if rule.non_blank and not value.strip():
        return "must not be blank"
    if kind.pattern is not None and kind.pattern.search(value) is None:
        return "is not in the expected form"
    if not is_unicode_text(value):
        return _NOT_UNICODE
    return None


def _within(value: float, rule: Rule) -> bool:
    return (
        (rule.minimum is None or value >= rule.minimum)
        and (rule.exclusive_minimum is None or value > rule.exclusive_minimum)
        and (rule.maximum is None or value <= rule.maximum)
    )


def is_unicode_text(value: str) -> bool:
    """False when ``value`` holds a lone surrogate (a valid JSON escape, but no event body could carry it)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema of a body type, as the OpenAPI document publishes it."""
    fields = _fields(cls)
    schema: dict[str, Any] = {"type": "object"}
    required = [field.key for field in fields if field.required]
    if required:
        schema["required"] = required
    schema["properties"] = {field.key: _field_schema(field) for field in fields}
    schema["additionalProperties"] = _shape(cls).ignores_unknown_keys
    schema.update(getattr(cls, "schema_extra", {}))
    return schema


def _field_schema(field: _Field) -> dict[str, Any]:
    schema = _schema(field.kind, field.rule)
    if not field.required and field.default is not None:
        schema["default"] = list(field.default) if isinstance(field.default, tuple) else field.default
    if "description" in schema:
        schema["description"] = schema.pop("description")
    return schema


def _schema(kind: Any, rule: Rule) -> dict[str, Any]:
    kind, rule = _without_none(*_unwrap(kind, rule))
    schema = _type_schema(kind)
    array = schema.get("type") == "array"
    limits: dict[str, Any] = {
        ("minItems" if array else "minLength"): rule.min_length,
        ("maxItems" if array else "maxLength"): rule.max_length,
        "minimum": rule.minimum,
        "exclusiveMinimum": rule.exclusive_minimum,
        "maximum": rule.maximum,
        "pattern": rule.pattern or (r"\S" if rule.non_blank else None),
        "format": rule.format,
        "uniqueItems": rule.unique or None,
        "contains": {"const": rule.contains} if rule.contains is not None else None,
    }
    schema.update({key: value for key, value in limits.items() if value is not None})
    if rule.description is not None:
        schema["description"] = rule.description
    return schema


def _type_schema(kind: Any) -> dict[str, Any]:
    origin, args = get_origin(kind), get_args(kind)
    if origin is Literal:
        return {"enum": list(args)}
    if origin is tuple:
        return {"type": "array", "items": _schema(args[0], _NO_RULE)}
    if origin is dict:
        names = {key: value for key, value in _schema(args[0], _NO_RULE).items() if key != "type"}
        return {"type": "object", "propertyNames": names, "additionalProperties": _schema(args[1], _NO_RULE)}
    if dataclasses.is_dataclass(kind):
        return json_schema(kind)  # type: ignore[arg-type]
    if kind is Any:
        return {}
    return {"type": _JSON_TYPES[kind]}
