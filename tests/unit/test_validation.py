"""The typed bodies of chalicelib.validation: every problem at once, with its field, never the refused value; and the
schema each type writes for the OpenAPI document."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import pytest
from jsonschema import Draft202012Validator

from chalicelib.errors import FieldProblem, RequestValidationError
from chalicelib.validation import Rule, json_schema, parse, read, read_environment

SECRET = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ="
URL = "https://user:password@hooks.example.com/in"


@dataclass(frozen=True, kw_only=True)
class Body:
    name: Annotated[str, Rule(min_length=1, max_length=8, description="A name.")]
    mode: Literal["a", "b"] = "a"
    count: Annotated[int, Rule(minimum=1, maximum=10)] = 1
    tags: Annotated[tuple[Literal["x", "y"], ...], Rule(min_length=1, unique=True)] = ("x",)
    note: Annotated[str | None, Rule(pattern="[a-z]+", problem="lower-case letters only")] = None

    @staticmethod
    def cross_checks(valid: dict[str, Any]) -> list[FieldProblem]:
        if valid.get("mode") == "b" and valid.get("note") is None:
            return [FieldProblem("note", "required for mode b")]
        return []


def problems(body: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(RequestValidationError) as caught:
        parse(Body, body)
    return [(problem.field, problem.problem) for problem in caught.value.problems]


def test_a_valid_body_becomes_the_type_with_its_defaults() -> None:
    assert parse(Body, {"name": "ana", "tags": ["y", "x"]}) == Body(name="ana", tags=("y", "x"))


def test_every_problem_is_listed_at_once_with_its_field() -> None:
    # Given a body wrong in every field at once
    body = {"extra": 1, "name": "", "mode": "c", "count": True, "tags": ["x", "x"], "note": "ABC"}
    # Then each field is named once, unknown fields first
    assert problems(body) == [
        ("extra", "unknown field"),
        ("name", "must be 1 to 8 characters"),
        ("mode", "must be one of a, b"),
        ("count", "must be a whole number"),
        ("tags", "must not repeat an entry"),
        ("note", "lower-case letters only"),
    ]


def test_missing_required_fields_and_cross_field_rules_are_listed_together() -> None:
    assert problems({"mode": "b", "count": 11}) == [
        ("name", "required"),
        ("count", "must be from 1 to 10"),
        ("note", "required for mode b"),
    ]


@pytest.mark.parametrize("value", [SECRET, URL])
def test_a_refused_value_is_never_echoed(value: str) -> None:
    for body in ({"name": value}, {"name": "a", "mode": value}, {"name": "a", "tags": [value]}, {value: 1}):
        text = " ".join(field + problem for field, problem in problems(body) if field != value)
        assert value not in text
        assert "password" not in text


def test_the_type_writes_its_json_schema() -> None:
    schema = json_schema(Body)
    Draft202012Validator.check_schema(schema)
    assert schema == {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 8, "description": "A name."},
            "mode": {"enum": ["a", "b"], "default": "a"},
            "count": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
            "tags": {
                "type": "array",
                "items": {"enum": ["x", "y"]},
                "minItems": 1,
                "uniqueItems": True,
                "default": ["x"],
            },
            "note": {"type": "string", "pattern": "[a-z]+"},
        },
        "additionalProperties": False,
    }


@pytest.mark.parametrize(
    "body",
    [{"name": "ana"}, {"name": "ana", "mode": "b", "note": "ok", "count": 10, "tags": ["x", "y"]}],
)
def test_what_parse_accepts_the_schema_accepts(body: dict[str, Any]) -> None:
    parse(Body, body)
    Draft202012Validator(json_schema(Body)).validate(body)


@dataclass(frozen=True, kw_only=True)
class Renamed:
    schema_extra: ClassVar[dict[str, Any]] = {"description": "A renamed field."}
    start: Annotated[str | None, Rule(name="from", pattern="^[a-z]{1,3}$", format="date-time")] = None


def test_a_field_is_read_and_described_under_its_json_name_and_a_final_dollar_ends_the_text() -> None:
    assert parse(Renamed, {"from": "abc"}).start == "abc"
    with pytest.raises(RequestValidationError) as caught:
        parse(Renamed, {"from": "abc\n", "start": "x"})
    assert [(p.field, p.problem) for p in caught.value.problems] == [
        ("start", "unknown field"),
        ("from", "is not in the expected form"),
    ]
    schema = json_schema(Renamed)
    assert schema["description"] == "A renamed field."
    assert schema["properties"] == {"from": {"type": "string", "pattern": "^[a-z]{1,3}$", "format": "date-time"}}


def test_read_returns_the_problems_for_the_caller_to_list_with_its_own() -> None:
    assert read(Body, {"name": "n"}) == (Body(name="n"), [])
    assert read(Body, {"count": 0}) == (
        None,
        [FieldProblem("name", "required"), FieldProblem("count", "must be from 1 to 10")],
    )


@dataclass(frozen=True, kw_only=True)
class Inner:
    kind: Literal["on"]
    text: Annotated[str, Rule(min_length=1, max_length=4, non_blank=True)]


@dataclass(frozen=True, kw_only=True)
class Outer:
    inner: Inner | None = None
    tags: Annotated[dict[Annotated[str, Rule(pattern="^[a-z]+$", problem="lower-case keys")], int] | None, Rule()] = (
        None
    )
    modes: Annotated[tuple[Literal["a", "b"], ...] | None, Rule(contains="a")] = None


def outer_problems(body: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(RequestValidationError) as caught:
        parse(Outer, body)
    return [(problem.field, problem.problem) for problem in caught.value.problems]


def test_nested_objects_and_maps_name_each_problem_by_its_path() -> None:
    # Given a nested object and a map, each wrong at several depths
    body = {"inner": {"kind": "off", "text": "  ", "extra": 1}, "tags": {"ok": "1", "Bad": 2}, "modes": ["b"]}
    # Then an object's unknown keys are listed at its path, a map's bad key or value at the key's
    assert outer_problems(body) == [
        ("inner", "unknown keys extra (expected kind and text)"),
        ("inner.kind", "must be on"),
        ("inner.text", "must not be blank"),
        ("tags.ok", "must be a whole number"),
        ("tags.Bad", "lower-case keys"),
        ("modes", "must include a"),
    ]
    assert outer_problems({"inner": [], "tags": "x", "modes": "a"}) == [
        ("inner", "must be a JSON object"),
        ("tags", "must be a JSON object"),
        ("modes", "must be a list"),
    ]


def test_a_valid_nested_body_becomes_its_types_and_a_lone_surrogate_is_refused() -> None:
    assert parse(Outer, {"inner": {"kind": "on", "text": "hi"}, "tags": {"a": 1}, "modes": ["b", "a"]}) == Outer(
        inner=Inner(kind="on", text="hi"), tags={"a": 1}, modes=("b", "a")
    )
    assert outer_problems({"inner": {"kind": "on", "text": "\ud800"}}) == [
        ("inner.text", "must be valid Unicode text (a lone surrogate such as \\ud800 has no UTF-8 form)")
    ]


def test_nested_types_write_their_schema() -> None:
    schema = json_schema(Outer)
    Draft202012Validator.check_schema(schema)
    assert schema["properties"]["inner"]["properties"]["text"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 4,
        "pattern": "\\S",
    }
    assert schema["properties"]["tags"] == {
        "type": "object",
        "propertyNames": {"pattern": "^[a-z]+$"},
        "additionalProperties": {"type": "integer"},
    }
    assert schema["properties"]["modes"]["contains"] == {"const": "a"}
    Draft202012Validator(schema).validate({"inner": {"kind": "on", "text": "hi"}, "tags": {"a": 1}, "modes": ["a"]})


@dataclass(frozen=True, kw_only=True)
class Numbers:
    seconds: Annotated[float, Rule(exclusive_minimum=0, maximum=30)] = 10.0
    waits: Annotated[tuple[Annotated[float, Rule(minimum=0)], ...] | None, Rule(min_length=1, max_length=2)] = None
    anything: Annotated[tuple[Any, ...], Rule(missing="is required: say something")]


def test_numbers_bounded_lists_any_entries_and_the_missing_text() -> None:
    assert parse(Numbers, {"seconds": 30, "waits": [0, 1.5], "anything": [None, {"a": 1}]}).waits == (0, 1.5)
    with pytest.raises(RequestValidationError) as caught:
        parse(Numbers, {"seconds": 0, "waits": [0, 1, 2]})
    assert [(p.field, p.problem) for p in caught.value.problems] == [
        ("seconds", "must be more than 0 and at most 30"),
        ("waits", "must have 1 to 2 entries"),
        ("anything", "is required: say something"),
    ]
    for value in (float("nan"), float("inf"), True, "1"):
        assert read(Numbers, {"seconds": value, "anything": []})[1] == [FieldProblem("seconds", "must be a number")]
    assert json_schema(Numbers)["properties"]["seconds"] == {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": 30,
        "default": 10.0,
    }


@dataclass(frozen=True, kw_only=True)
class Variables:
    COUNT: Annotated[int, Rule(minimum=1, maximum=9, problem="is invalid (expected 1 to 9)")] = 3
    ON: bool = False
    MODE: Literal["deliver", "archive-only"] = "deliver"
    IDS: Annotated[tuple[Annotated[str, Rule(pattern="^[a-z]+$")], ...], Rule(missing="is not set", problem="bad ids")]
    FLOWS: Annotated[dict[str, Annotated[str, Rule(min_length=1)]], Rule(problem="bad flows")] = field(
        default_factory=dict
    )
    NAME: str | None = None


def test_environment_text_is_read_as_each_variables_type() -> None:
    environ = {
        "COUNT": " 7 ",
        "ON": "TRUE",
        "MODE": "Archive-Only",
        "IDS": " a, ,b,",
        "FLOWS": '{"x": "1"}',
        "NAME": "",
    }
    assert read_environment(Variables, {**environ, "OTHER": "ignored"}) == (
        Variables(COUNT=7, ON=True, MODE="archive-only", IDS=("a", "b"), FLOWS={"x": "1"}),
        [],
    )


def test_environment_problems_are_named_by_their_variable_and_never_quote_a_part_of_a_value() -> None:
    # Given a list with no entries (as unset) and problems inside a list's entry and a JSON object's key and value
    environ = {"COUNT": "many", "ON": "yes", "MODE": "x", "IDS": " , ", "FLOWS": f'{{"{URL}": "", "y": ""}}'}
    value, problems = read_environment(Variables, environ)
    assert value is None
    # Then each variable is named once, in its own words
    assert [(p.field, p.problem) for p in problems] == [
        ("COUNT", "is invalid (expected 1 to 9)"),
        ("ON", "must be true or false"),
        ("MODE", "must be one of deliver, archive-only"),
        ("IDS", "is not set"),
        ("FLOWS", "bad flows"),
    ]
    assert read_environment(Variables, {"IDS": f"a,{URL}", "FLOWS": "{not json"})[1] == [
        FieldProblem("IDS", "bad ids"),
        FieldProblem("FLOWS", "bad flows"),
    ]


@dataclass(frozen=True)
class Entry:
    ignores_unknown_keys: ClassVar[bool] = True
    null_means_absent: ClassVar[bool] = True

    entry_id: Annotated[str, Rule(name="Id", min_length=1)]
    note: str | None = None


@dataclass(frozen=True)
class Extensible:
    ignores_unknown_keys: ClassVar[bool] = True
    null_means_absent: ClassVar[bool] = True

    kind: Annotated[str, Rule(name="Type")]
    entries: Annotated[tuple[Entry, ...], Rule(name="Entries")] = ()


def test_an_extensible_type_lets_unknown_keys_pass_and_reads_null_as_absent() -> None:
    # Given keys the type does not name, at the top and in a list's entry, and nulls for optional fields
    body = {"Type": "t", "Added": {"x": 1}, "Entries": [{"Id": "e", "note": None, "Later": True}]}

    # Then the body reads as the type, and its schema allows more keys
    assert parse(Extensible, body) == Extensible(kind="t", entries=(Entry(entry_id="e"),))
    assert parse(Extensible, {"Type": "t", "Entries": None}) == Extensible(kind="t")
    assert json_schema(Extensible)["additionalProperties"] is True
    assert json_schema(Body)["additionalProperties"] is False


def test_a_list_of_objects_names_each_entry_by_its_index_and_a_null_required_field_is_missing() -> None:
    _, found = read(Extensible, {"Type": None, "Entries": [{"Id": "a"}, "b", {"Id": None}, {"Id": "", "note": 1}]})

    assert [(problem.field, problem.problem) for problem in found] == [
        ("Type", "required"),
        ("Entries[1]", "must be a JSON object"),
        ("Entries[2].Id", "required"),
        ("Entries[3].Id", "must be at least 1 characters"),
        ("Entries[3].note", "must be a string"),
    ]


@dataclass(frozen=True)
class Trimmed:
    name: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.name.strip())


def test_a_type_whose_init_does_more_than_set_its_fields_is_made_through_it() -> None:
    """Types are made without their __init__ only when it sets the fields and nothing else."""
    assert parse(Trimmed, {"name": " n "}).name == "n"
