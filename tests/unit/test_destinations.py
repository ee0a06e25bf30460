"""Destinations: which events each one accepts, and how the relay config is read and refused."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.destination_kinds import ArchiveTarget
from chalicelib.destinations import (
    UNKNOWN_INSTANCE,
    UNKNOWN_VISIBILITY,
    Destination,
    RelayConfigError,
    SecretRef,
    is_webhook_secret,
    load_relay_config,
    parse_relay_config,
    relay_config,
)
from chalicelib.events import RelayEvent

CONFIG_DIR = Path(__file__).resolve().parents[2] / "chalicelib" / "config"
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
INSTANCE = "11111111-2222-3333-4444-555555555555"
OTHER_INSTANCE = "99999999-2222-3333-4444-555555555555"


def chat_event(
    event_type: str = "chat.message",
    *,
    role: str | None = "CUSTOMER",
    visibility: str | None = "ALL",
    instance_id: str | None = INSTANCE,
) -> RelayEvent:
    """A RelayEvent with the data shape of the shared contract."""
    data: dict[str, Any] = {
        "item_id": "item-1",
        "initial_contact_id": "contact-1",
        "contact_id": "contact-1",
        "related_contact_id": None,
        "instance_id": instance_id,
        "participant": {"id": None if role is None else "participant-1", "role": role, "display_name": None},
        "visibility": visibility,
        "connect_type": "MESSAGE",
        "content_type": "text/plain",
        "content": "hello",
    }
    return RelayEvent(type=event_type, timestamp="2025-01-01T00:00:00.000Z", data=data, webhook_id="msg_1")


def call_started(instance_id: str | None = INSTANCE) -> RelayEvent:
    """A call.started event: no participant, no visibility."""
    data = {"contact_id": "contact-2", "instance_id": instance_id}
    return RelayEvent(type="call.started", timestamp="2025-01-01T00:00:00Z", data=data, webhook_id="msg_2")


def destination(**overrides: Any) -> Destination:
    """A destination accepting everything, with ``overrides``."""
    fields: dict[str, Any] = {
        "name": "crm",
        "url": "https://crm.example.com/hook",
        "secrets": (SecretRef("ssm", "/s"),),
    }
    return Destination(**(fields | overrides))


def entry(**overrides: Any) -> dict[str, Any]:
    """One valid destination entry of a config file, with ``overrides`` (None removes a field)."""
    base: dict[str, Any] = {
        "name": "crm",
        "url": "https://crm.example.com/hooks/connect",
        "secrets": ["ssm:/relay/prod/crm-secret"],
    }
    merged = base | overrides
    return {k: v for k, v in merged.items() if v is not None}


def problems_of(raw: object) -> list[str]:
    """The problems parse_relay_config lists for ``raw`` (which must be invalid)."""
    with pytest.raises(RelayConfigError) as caught:
        parse_relay_config(raw, source="test.json")
    return caught.value.problems


# --- accepts(): event types -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_types", "event_type", "expected"),
    [
        (None, "chat.message", True),
        (None, "chat.ended", True),
        (None, "call.started", True),
        (frozenset({"chat.message"}), "chat.message", True),
        (frozenset({"chat.message"}), "chat.ended", False),
        (frozenset({"chat.participant.*"}), "chat.participant.joined", True),
        (frozenset({"chat.participant.*"}), "chat.participant.display_name_updated", True),
        (frozenset({"chat.participant.*"}), "chat.message", False),
        (frozenset({"chat.participant.*", "chat.ended"}), "chat.ended", True),
        (frozenset({"chat.*"}), "chat.transfer.failed", True),
        (frozenset({"chat.*"}), "call.started", False),
    ],
)
def test_accepts_filters_event_types_by_name_and_prefix_wildcard(event_types, event_type, expected):
    """Given a destination's event types, when an event arrives, then only matching types pass."""
    event = call_started() if event_type == "call.started" else chat_event(event_type)
    assert destination(event_types=event_types).accepts(event) is expected


@pytest.mark.parametrize(
    ("event_types", "include_typing", "expected"),
    [
        (None, False, False),
        (None, True, True),
        (frozenset({"chat.typing"}), False, True),
        (frozenset({"chat.message", "chat.typing"}), False, True),
        (frozenset({"chat.*"}), False, False),
        (frozenset({"chat.*"}), True, True),
        (frozenset({"chat.message"}), True, False),
    ],
)
def test_typing_is_off_unless_included_or_listed_by_name(event_types, include_typing, expected):
    """Given typing settings, when a chat.typing event arrives, then it passes only when asked for."""
    chosen = destination(event_types=event_types, include_typing=include_typing)
    assert chosen.accepts(chat_event("chat.typing")) is expected


# --- accepts(): roles, instances ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "expected"),
    [("CUSTOMER", True), ("CUSTOM_BOT", True), ("AGENT", False), ("SYSTEM", False), (None, True)],
)
def test_accepts_filters_by_sender_role_and_lets_senderless_events_through(role, expected):
    """Given roles CUSTOMER and CUSTOM_BOT, then other senders are dropped and events with no sender pass."""
    chosen = destination(participant_roles=frozenset({"CUSTOMER", "CUSTOM_BOT"}))
    assert chosen.accepts(chat_event(role=role)) is expected


@pytest.mark.parametrize(
    ("instance_ids", "instance_id", "expected"),
    [
        (None, INSTANCE, True),
        (None, None, True),
        (frozenset({INSTANCE}), INSTANCE, True),
        (frozenset({INSTANCE}), OTHER_INSTANCE, False),
        (frozenset({INSTANCE}), None, False),
    ],
)
def test_accepts_filters_by_instance(instance_ids, instance_id, expected):
    """Given instance ids, then an event passes only from them; one with no id only if none are named."""
    assert destination(instance_ids=instance_ids).accepts(chat_event(instance_id=instance_id)) is expected


# --- accepts(): AWS's visibility rule -------------------------------------------------------------------------

VISIBILITY_TABLE = [
    # visibility, sender role, audience, delivered
    ("ALL", "CUSTOMER", "customer", False),
    ("ALL", "AGENT", "customer", True),
    ("ALL", "SYSTEM", "customer", True),
    ("CUSTOMER", "CUSTOMER", "customer", False),
    ("CUSTOMER", "AGENT", "customer", True),
    ("CUSTOMER", "SYSTEM", "customer", True),
    ("AGENT", "CUSTOMER", "customer", False),
    ("AGENT", "AGENT", "customer", False),
    ("AGENT", "SYSTEM", "customer", False),
    ("ALL", "CUSTOMER", "agent", True),
    ("ALL", "AGENT", "agent", False),
    ("ALL", "SYSTEM", "agent", True),
    ("CUSTOMER", "CUSTOMER", "agent", False),
    ("CUSTOMER", "AGENT", "agent", False),
    ("CUSTOMER", "SYSTEM", "agent", False),
    ("AGENT", "CUSTOMER", "agent", True),
    ("AGENT", "AGENT", "agent", False),
    ("AGENT", "SYSTEM", "agent", True),
    ("AGENT", "CUSTOM_BOT", "agent", True),
    ("CUSTOMER", "SUPERVISOR", "customer", True),
] + [(v, r, "all", True) for v in ("ALL", "CUSTOMER", "AGENT") for r in ("CUSTOMER", "AGENT", "SYSTEM")]


@pytest.mark.parametrize(("visibility", "role", "audience", "expected"), VISIBILITY_TABLE)
def test_audience_follows_aws_visibility_rule(visibility, role, audience, expected):
    """Given an audience, when an item with this visibility and sender arrives, then AWS's rule decides."""
    chosen = destination(audience=audience)
    assert chosen.accepts(chat_event(role=role, visibility=visibility)) is expected


@pytest.mark.parametrize("audience", ["customer", "agent"])
def test_issue7_item7_unknown_visibility_never_reaches_an_audience_filtered_destination(audience):
    """Given an item of unknown visibility, then no audience-filtered destination accepts it, and it is undecided
    (to be kept) unless the sender alone rules it out; a destination for all audiences takes it."""
    event = chat_event(role="SYSTEM", visibility=None)
    chosen = destination(audience=audience)
    assert not chosen.accepts(event)
    assert chosen.undecided(event) == UNKNOWN_VISIBILITY
    assert destination(audience="all").accepts(event)
    assert destination(audience="all").undecided(event) is None
    own_side = chat_event(role=audience.upper(), visibility=None)
    assert not chosen.accepts(own_side)
    assert chosen.undecided(own_side) is None  # a side never sees its own messages, whatever the visibility


def test_issue7_item7_an_event_without_instance_id_never_reaches_an_instance_filtered_destination():
    """Given an event with no instance id, then a destination naming instances does not accept it but cannot
    decide (it is kept); a destination that refuses it for another reason refuses it outright."""
    event = chat_event(instance_id=None)
    chosen = destination(instance_ids=frozenset({INSTANCE}))
    assert not chosen.accepts(event)
    assert chosen.undecided(event) == UNKNOWN_INSTANCE
    by_role = destination(instance_ids=frozenset({INSTANCE}), participant_roles=frozenset({"AGENT"}))
    assert by_role.undecided(event) is None
    assert destination().accepts(event)


def test_missing_visibility_key_is_unknown():
    """Given event data without a visibility key at all, then it is as unknown as null."""
    event = chat_event(role="AGENT")
    del event.data["visibility"]
    assert not destination(audience="customer").accepts(event)
    assert destination(audience="customer").undecided(event) == UNKNOWN_VISIBILITY


destinations_with_filters = st.builds(
    destination,
    audience=st.sampled_from(["customer", "agent", "all"]),
    participant_roles=st.none() | st.frozensets(st.sampled_from(["AGENT", "CUSTOMER", "SYSTEM"]), min_size=1),
    instance_ids=st.none() | st.just(frozenset({INSTANCE})),
)


@given(
    chosen=destinations_with_filters,
    role=st.sampled_from([None, "AGENT", "CUSTOMER", "SYSTEM", "CUSTOM_BOT"]),
    visibility=st.sampled_from([None, "AGENT", "CUSTOMER", "ALL"]),
    instance_id=st.sampled_from([None, INSTANCE, OTHER_INSTANCE]),
)
def test_filters_decide_only_what_every_completion_agrees_on(chosen, role, visibility, instance_id):
    """Given any destination and an event whose visibility or instance may be unknown, then: accepted means every
    filter knew enough; refused means no value of the unknowns would have been accepted; undecided means one would.
    """
    event = chat_event(role=role, visibility=visibility, instance_id=instance_id)
    completions = [
        chat_event(role=role, visibility=v, instance_id=i)
        for v in ([visibility] if visibility else ["AGENT", "CUSTOMER", "ALL"])
        for i in ([instance_id] if instance_id else [INSTANCE, OTHER_INSTANCE])
    ]
    accepted_somehow = any(chosen.accepts(completion) for completion in completions)
    if chosen.accepts(event):
        assert all(chosen.accepts(completion) for completion in completions)
        assert chosen.undecided(event) is None
    elif chosen.undecided(event) is None:
        assert not accepted_somehow
    else:
        assert accepted_somehow


@pytest.mark.parametrize("audience", ["customer", "agent"])
def test_events_without_sender_pass_audience_filters(audience):
    """Given an audience, when chat.ended (no participant role, visible to all) arrives, then it is delivered."""
    assert destination(audience=audience).accepts(chat_event("chat.ended", role=None, visibility="ALL"))


@pytest.mark.parametrize(("visibility", "customer", "agent"), [("AGENT", False, True), ("CUSTOMER", True, False)])
def test_events_without_sender_still_obey_visibility(visibility, customer, agent):
    """Given an item with no sender that Connect shows to one side only, then only that side's destinations get it."""
    event = chat_event("chat.event", role=None, visibility=visibility)
    assert destination(audience="customer").accepts(event) is customer
    assert destination(audience="agent").accepts(event) is agent


def test_call_started_passes_audience_and_role_filters_but_not_type_or_instance_filters():
    """Given audience, role and instance filters, then call.started passes the first two, not the others."""
    chosen = destination(
        audience="customer", participant_roles=frozenset({"AGENT"}), instance_ids=frozenset({INSTANCE})
    )
    assert chosen.accepts(call_started())
    assert not chosen.accepts(call_started(instance_id=OTHER_INSTANCE))
    assert not destination(event_types=frozenset({"chat.*"})).accepts(call_started())


# --- config: valid files ----------------------------------------------------------------------------------


def test_valid_file_is_read_into_destinations(tmp_path):
    """Given a file using every field, when it is loaded, then each field lands in the Destination."""
    path = tmp_path / "relay.json"
    document = {
        "version": 1,
        "destinations": [
            {
                "name": "crm",
                "url": "https://crm.example.com/hooks/connect",
                "events": ["chat.message", "chat.participant.*"],
                "audience": "agent",
                "roles": ["CUSTOMER"],
                "instances": [INSTANCE],
                "include_typing": False,
                "timeout_seconds": 5,
                "secrets": ["ssm:/relay/prod/crm-secret", "secretsmanager:arn:aws:secretsmanager:us-east-1:1:secret:x"],
                "allow_private_network": True,
            },
            {"name": "local", "url": "http://127.0.0.1:8080/", "allow_http": True, "secrets": [SECRET]},
        ],
        "allow_literal_secrets": True,
    }
    path.write_text(json.dumps(document))

    config = load_relay_config(path)

    crm, local = config.destinations
    assert config.version == 1
    assert crm == Destination(
        name="crm",
        url="https://crm.example.com/hooks/connect",
        event_types=frozenset({"chat.message", "chat.participant.*"}),
        include_typing=False,
        participant_roles=frozenset({"CUSTOMER"}),
        audience="agent",
        instance_ids=frozenset({INSTANCE}),
        timeout_seconds=5.0,
        secrets=(
            SecretRef("ssm", "/relay/prod/crm-secret"),
            SecretRef("secretsmanager", "arn:aws:secretsmanager:us-east-1:1:secret:x"),
        ),
        allow_http=False,
        allow_private_network=True,
    )
    assert local == destination(
        name="local", url="http://127.0.0.1:8080/", allow_http=True, secrets=(SecretRef("literal", SECRET),)
    )
    assert isinstance(crm.timeout_seconds, float)


def test_module_docstring_example_is_valid():
    """Given the example in the module's documentation, then it parses (the docs cannot drift)."""
    import chalicelib.destinations as module

    doc = module.__doc__ or ""
    example = doc[doc.index("{") : doc.index("Per destination")].strip()
    config = parse_relay_config(json.loads(example), source="docstring")
    assert [d.name for d in config.destinations] == ["crm"]


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_shipped_configs_archive_every_chat_to_the_relays_own_bucket(stage):
    """Given the packaged stage files, then they are valid and keep everything in the stage's bucket, SSE-KMS."""
    (archive,) = load_relay_config(CONFIG_DIR / f"destinations-{stage}.json").destinations
    assert archive.kind == "s3"
    assert archive.event_types is None
    target = archive.target
    assert isinstance(target, ArchiveTarget)
    assert target.bucket == f"connect-chat-relay-{stage}-111122223333"
    assert target.kms_key is not None
    assert target.kms_key.name == f"alias/connect-chat-relay-{stage}-archive"


# --- config: one problem per field ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"colour": "blue"}, 'destinations[0] ("crm").colour: unknown field'),
        ({"url": None}, 'destinations[0] ("crm").url: is required'),
        ({"name": None}, "destinations[0].name: is required"),
        ({"name": "has space"}, "destinations[0].name: must be"),
        ({"url": "http://crm.example.com/hook"}, 'destinations[0] ("crm").url: must use https'),
        ({"url": "ftp://crm.example.com/hook"}, 'destinations[0] ("crm").url: must use https'),
        ({"url": "https:///no-host"}, 'destinations[0] ("crm").url: has no host'),
        ({"url": "https://crm.example.com:99999/"}, 'destinations[0] ("crm").url: is not a valid URL'),
        ({"url": "https://crm.example.com/#top"}, 'destinations[0] ("crm").url: must not have a #fragment'),
        ({"url": 42}, 'destinations[0] ("crm").url: must be a non-empty string'),
        ({"url": "https://@crm.example.com/"}, 'destinations[0] ("crm").url: must not carry credentials'),
        ({"url": "https://:token@crm.example.com/"}, 'destinations[0] ("crm").url: must not carry credentials'),
        ({"timeout_seconds": "10"}, 'destinations[0] ("crm").timeout_seconds: must be a number'),
        ({"timeout_seconds": 0}, 'destinations[0] ("crm").timeout_seconds: must be a number'),
        ({"timeout_seconds": 30.5}, 'destinations[0] ("crm").timeout_seconds: must be a number'),
        ({"timeout_seconds": True}, 'destinations[0] ("crm").timeout_seconds: must be a number'),
        ({"events": ["chat.mesage"]}, "destinations[0] (\"crm\").events: 'chat.mesage' is not an event type"),
        ({"events": ["chat.nothing.*"]}, "destinations[0] (\"crm\").events: 'chat.nothing.*' is not"),
        ({"events": ["*"]}, "destinations[0] (\"crm\").events: '*' is not"),
        ({"events": ["chat.*.joined"]}, "destinations[0] (\"crm\").events: 'chat.*.joined' is not"),
        ({"events": []}, 'destinations[0] ("crm").events: must be a non-empty list'),
        ({"events": "chat.message"}, 'destinations[0] ("crm").events: must be a non-empty list'),
        ({"audience": "everyone"}, 'destinations[0] ("crm").audience: must be one of customer, agent, all'),
        ({"roles": ["customer"]}, 'destinations[0] ("crm").roles: must be a non-empty list of roles'),
        ({"instances": ["not an id!"]}, 'destinations[0] ("crm").instances: must be a non-empty list'),
        ({"include_typing": "yes"}, 'destinations[0] ("crm").include_typing: must be true or false'),
        (
            {"include_typing": True, "events": ["chat.message"]},
            'destinations[0] ("crm").include_typing: is true but events does not include chat.typing',
        ),
        ({"allow_http": 1}, 'destinations[0] ("crm").allow_http: must be true or false'),
        ({"allow_private_network": "no"}, 'destinations[0] ("crm").allow_private_network: must be true or false'),
        ({"secrets": None}, 'destinations[0] ("crm").secrets: is required'),
        ({"secrets": []}, 'destinations[0] ("crm").secrets: must be a list of 1 to 3'),
        ({"secrets": [f"ssm:/s{i}" for i in range(4)]}, 'destinations[0] ("crm").secrets: must be a list of 1 to 3'),
        ({"secrets": ["ssm:"]}, 'destinations[0] ("crm").secrets[0]: must be "ssm:<parameter name>"'),
        ({"secrets": ["vault:/x"]}, 'destinations[0] ("crm").secrets[0]: must be "ssm:<parameter name>"'),
        ({"secrets": ["ssm:/a", 7]}, 'destinations[0] ("crm").secrets[1]: must be "ssm:<parameter name>"'),
        ({"secrets": ["ssm:/a", "ssm:/a"]}, 'destinations[0] ("crm").secrets[1]: repeats secrets[0]'),
        ({"secrets": ["whsec_dG9vIHNob3J0"]}, 'destinations[0] ("crm").secrets[0]: must be'),
        ({"max_per_second": 0}, 'destinations[0] ("crm").max_per_second: must be a whole number'),
        ({"max_per_second": 2.5}, 'destinations[0] ("crm").max_per_second: must be a whole number'),
        ({"max_per_second": True}, 'destinations[0] ("crm").max_per_second: must be a whole number'),
        ({"max_per_second": 10_001}, 'destinations[0] ("crm").max_per_second: must be a whole number'),
        ({"disable_after_hours": 0}, 'destinations[0] ("crm").disable_after_hours: must be a number'),
        ({"disable_after_hours": 721}, 'destinations[0] ("crm").disable_after_hours: must be a number'),
        ({"disable_after_hours": "24"}, 'destinations[0] ("crm").disable_after_hours: must be a number'),
        ({"disable_after_hours": float("nan")}, 'destinations[0] ("crm").disable_after_hours: must be a number'),
    ],
)
def test_each_invalid_field_is_named_with_its_destination(overrides, where):
    """Given one destination with one bad field, then the one problem names the destination and the field."""
    problems = problems_of({"version": 1, "destinations": [entry(**overrides)]})
    assert len(problems) == 1, problems
    assert problems[0].startswith(where), problems


def test_http_is_accepted_with_allow_http():
    """Given allow_http, then an http url is accepted."""
    config = parse_relay_config(
        {"version": 1, "destinations": [entry(url="http://crm.example.com/hook", allow_http=True)]}, source="t"
    )
    assert config.destinations[0].allow_http


def test_url_credentials_are_refused_without_echoing_them():
    """Given a url with user:password@, then it is refused and the password is not in the message."""
    problems = problems_of({"version": 1, "destinations": [entry(url="https://bob:hunter2@crm.example.com/")]})
    assert problems == [
        'destinations[0] ("crm").url: must not carry credentials (user:password@); signatures authenticate the relay'
    ]
    assert "hunter2" not in str(problems)


def test_duplicate_names_are_refused():
    """Given two destinations with one name, then the second is named as repeating the first."""
    problems = problems_of({"version": 1, "destinations": [entry(), entry(url="https://other.example.com/")]})
    assert problems == ['destinations[1] ("crm").name: repeats the name of destinations[0]']


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"destinations": []}, "version: must be 1"),
        ({"version": 2, "destinations": []}, "version: must be 1"),
        ({"version": True, "destinations": []}, "version: must be 1"),
        ({"version": 1, "destinations": [], "extra": 1}, "extra: unknown field"),
        ({"version": 1}, "destinations: must be a list"),
        ({"version": 1, "destinations": ["crm"]}, "destinations[0]: must be an object"),
        (
            {"version": 1, "destinations": [], "allow_literal_secrets": "yes"},
            "allow_literal_secrets: must be true or false",
        ),
        (["not", "an", "object"], "the document must be a JSON object"),
    ],
)
def test_top_level_problems(document, problem):
    """Given a document with one top-level fault, then that fault is listed."""
    problems = problems_of(document)
    assert len(problems) == 1, problems
    assert problems[0].startswith(problem)


def test_every_problem_is_listed_together():
    """Given several faults across destinations, then one error lists all of them, not just the first."""
    document = {
        "version": 1,
        "surprise": True,
        "destinations": [
            entry(url="http://a.example.com/", timeout_seconds=60),
            entry(name="billing", audience="nobody", secrets=[]),
            {"url": "https://c.example.com/", "secrets": ["ssm:/c"]},
        ],
    }
    with pytest.raises(RelayConfigError) as caught:
        parse_relay_config(document, source="stage.json")
    assert caught.value.problems == [
        "surprise: unknown field (expected allow_literal_secrets, destinations, version)",
        'destinations[0] ("crm").url: must use https (http only with allow_http: true)',
        'destinations[0] ("crm").timeout_seconds: must be a number of seconds more than 0 and at most 30',
        'destinations[1] ("billing").audience: must be one of customer, agent, all',
        'destinations[1] ("billing").secrets: must be a list of 1 to 3 secrets (more than one only while rotating)',
        "destinations[2].name: is required",
    ]
    assert str(caught.value).startswith("invalid relay config stage.json: surprise: unknown field")


# --- config: literal secrets ------------------------------------------------------------------------------


def test_literal_secret_is_refused_without_allow_literal_secrets():
    """Given a whsec_ literal and no allow_literal_secrets, then it is refused, and its value not shown."""
    problems = problems_of({"version": 1, "destinations": [entry(secrets=[SECRET])]})
    assert problems == [
        'destinations[0] ("crm").secrets[0]: is a literal secret, refused unless allow_literal_secrets is true '
        "(use ssm: or secretsmanager:)"
    ]
    assert SECRET[6:] not in str(problems)


@pytest.mark.parametrize(
    "document",
    [
        {"version": 1, "destinations": [entry(secrets=[SECRET], allow_literal_secrets=True)]},
        {"version": 1, "allow_literal_secrets": True, "destinations": [entry(secrets=[SECRET])]},
    ],
)
def test_literal_secret_is_accepted_when_allowed(document):
    """Given allow_literal_secrets on the destination or the file, then the literal becomes a literal ref."""
    (chosen,) = parse_relay_config(document, source="t").destinations
    assert chosen.secrets == (SecretRef("literal", SECRET),)


def test_secret_ref_hides_literal_value():
    """Given a literal ref, then str and repr show whsec_*** only; references show their name."""
    literal = SecretRef("literal", SECRET)
    assert str(literal) == "literal:whsec_***"
    assert repr(literal) == "SecretRef(literal:whsec_***)"
    assert str(SecretRef("ssm", "/relay/x")) == "ssm:/relay/x"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (SECRET, True),
        (SECRET[6:], True),
        ("whsec_" + base64.b64encode(bytes(24)).decode(), True),
        ("whsec_" + base64.b64encode(bytes(64)).decode(), True),
        ("whsec_" + base64.b64encode(bytes(23)).decode(), False),
        ("whsec_" + base64.b64encode(bytes(65)).decode(), False),
        ("whsec_" + base64.urlsafe_b64encode(b"\xff" * 30).decode(), False),
        ("whsec_not base64 at all, not at all!", False),
        ("", False),
    ],
)
def test_is_webhook_secret(value, expected):
    """Given a value, then it counts as a Standard Webhooks secret only for base64 of 24 to 64 bytes."""
    assert is_webhook_secret(value) is expected


# --- config: pasted secrets and development switches ------------------------------------------------------

PASTED = base64.b64encode(bytes(range(100, 132))).decode()  # a key's base64, as a secrets manager shows it


@pytest.mark.parametrize(
    "reference",
    [
        f"secretsmanager:whsec_{PASTED}",
        f"ssm:whsec_{PASTED}",
        f"ssm:/whsec_{PASTED}",
        f"secretsmanager:WHSEC_{PASTED}",
        f"secretsmanager:{PASTED}",
        f"ssm:/{PASTED}",
    ],
)
def test_issue7_item16_a_pasted_secret_as_a_reference_is_refused_without_echoing_it(reference):
    """Given a reference whose name is a secret's value, when the file is read, then it is refused, the message
    says why and where, and no part of the value shows in the message or the error."""
    with pytest.raises(RelayConfigError) as caught:
        parse_relay_config({"version": 1, "destinations": [entry(secrets=[reference])]}, source="t")

    kind = reference.partition(":")[0]
    assert caught.value.problems == [
        f'destinations[0] ("crm").secrets[0]: looks like a secret value pasted after "{kind}:", not a name: keep the '
        f"value in {'Secrets Manager' if kind == 'secretsmanager' else 'SSM Parameter Store (SecureString)'} and put "
        "its name here"
    ]
    for shown in (str(caught.value), repr(caught.value)):
        assert PASTED[:12] not in shown
        assert PASTED[-12:] not in shown


@given(secret=st.binary(min_size=24, max_size=64).map(lambda raw: base64.b64encode(raw).decode()))
def test_issue7_item16_any_whsec_value_after_a_reference_prefix_is_refused_unseen(secret):
    """Given any Standard Webhooks secret pasted after ssm: or secretsmanager:, then it is refused, unseen."""
    for reference in (f"secretsmanager:whsec_{secret}", f"ssm:/whsec_{secret}"):
        with pytest.raises(RelayConfigError) as caught:
            parse_relay_config({"version": 1, "destinations": [entry(secrets=[reference])]}, source="t")
        assert secret not in str(caught.value)
        assert "looks like a secret value" in str(caught.value)


@pytest.mark.parametrize(
    "reference",
    [
        "ssm:/connect-chat-relay/prod/crm-secret",
        "ssm:/ConnectChatRelay/Prod/CrmSecret",
        "ssm:crm_webhook_secret_2026",
        "secretsmanager:connect-chat-relay/prod/crm",
        "secretsmanager:arn:aws:secretsmanager:us-east-1:111122223333:secret:connect-chat-relay/prod/crm-AbC123",
        "secretsmanager:webhooksecretsforthecrmintegration",  # base64-shaped, but a word: no digits, no capitals
    ],
)
def test_names_that_are_names_are_accepted(reference):
    """Given ordinary parameter and secret names, then they are accepted as references."""
    config = parse_relay_config({"version": 1, "destinations": [entry(secrets=[reference])]}, source="t")
    assert str(config.destinations[0].secrets[0]) == reference


def test_issue7_item17_development_switches_are_refused_in_a_production_stage():
    """Given a production stage's reading (development_switches false), then each development switch set to true
    is named and refused, with the override that would allow it."""
    document = {
        "version": 1,
        "allow_literal_secrets": True,
        "destinations": [
            entry(url="http://127.0.0.1:8080/hook", allow_http=True, allow_private_network=True),
            entry(name="local", secrets=[SECRET], allow_literal_secrets=True),
            entry(name="quiet", allow_http=False, allow_private_network=False, allow_literal_secrets=False),
        ],
    }
    refusal = "is a development switch, refused in a production stage unless ALLOW_DEVELOPMENT_SWITCHES_IN_PRODUCTION"
    with pytest.raises(RelayConfigError) as caught:
        parse_relay_config(document, source="t", development_switches=False)

    assert caught.value.problems == [
        f"allow_literal_secrets: {refusal}=true is set",
        f'destinations[0] ("crm").allow_http: {refusal}=true is set',
        f'destinations[0] ("crm").allow_private_network: {refusal}=true is set',
        f'destinations[1] ("local").allow_literal_secrets: {refusal}=true is set',
    ]
    assert len(parse_relay_config(document, source="t").destinations) == 3


# --- secret values never leak -----------------------------------------------------------------------------

webhook_secrets = st.binary(min_size=24, max_size=64).map(lambda raw: "whsec_" + base64.b64encode(raw).decode())
not_references = st.text(max_size=80).filter(lambda s: not s.startswith(("ssm:", "secretsmanager:", "whsec_")))


@given(secret=webhook_secrets)
def test_literal_secret_values_never_appear_in_errors_or_reprs(secret):
    """Given any valid literal secret, then neither the refusal nor the accepted destination shows it."""
    encoded = secret.removeprefix("whsec_")
    with pytest.raises(RelayConfigError) as caught:
        parse_relay_config({"version": 1, "destinations": [entry(secrets=[secret], audience="x")]}, source="t")
    assert encoded not in str(caught.value)
    assert encoded not in repr(caught.value)

    config = parse_relay_config(
        {"version": 1, "allow_literal_secrets": True, "destinations": [entry(secrets=[secret])]}, source="t"
    )
    assert encoded not in repr(config)
    assert encoded not in str(config.destinations[0].secrets)


@given(value=not_references)
@settings(suppress_health_check=[HealthCheck.filter_too_much])
def test_malformed_secret_entries_never_shape_the_message(value):
    """Given any string that is not a reference (a pasted secret, say), then the message does not depend on it."""

    def message(secret: str) -> str:
        with pytest.raises(RelayConfigError) as caught:
            parse_relay_config({"version": 1, "destinations": [entry(secrets=[secret])]}, source="t")
        return str(caught.value)

    assert message(value) == message("placeholder")


# --- loading and caching ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"version": 1, "destinations": [}', "is not JSON (Expecting value at line 1 column 33)"),
        ('{"version": 1, "version": 1, "destinations": []}', "repeats the key 'version' in one object"),
        ("version: 1\ndestinations: []\n", "is not JSON (Expecting value at line 1 column 1)"),
    ],
)
def test_unreadable_documents_are_refused(tmp_path, text, problem):
    """Given a file that is not valid JSON (YAML included), then loading names the file and the fault."""
    path = tmp_path / "relay.json"
    path.write_text(text)
    with pytest.raises(RelayConfigError) as caught:
        load_relay_config(path)
    assert caught.value.problems == [problem]
    assert str(path) in str(caught.value)


def test_missing_file_is_refused(tmp_path):
    """Given no file, then loading fails with the path and the reason."""
    with pytest.raises(RelayConfigError, match="cannot be read"):
        load_relay_config(tmp_path / "absent.json")


def test_relay_config_is_read_once_until_the_file_changes(tmp_path):
    """Given a config read once, then it is reused until the file's mtime changes; then it is read again."""
    path = tmp_path / "relay.json"
    path.write_text(json.dumps({"version": 1, "destinations": [entry()]}))
    first = relay_config(path)
    assert relay_config(path) is first

    path.write_text(json.dumps({"version": 1, "destinations": []}))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

    second = relay_config(path)
    assert second.destinations == ()
    assert relay_config(path) is second


def test_health_fields_are_read_and_default_to_none():
    """Given a rate and a threshold, then the destination carries them (hours as seconds); else neither."""
    config = parse_relay_config(
        {"version": 1, "destinations": [entry(max_per_second=20, disable_after_hours=0.5), entry(name="plain")]},
        source="test.json",
    )
    limited, plain = config.destinations
    assert (limited.max_per_second, limited.disable_after_seconds) == (20, 1800.0)
    assert (plain.max_per_second, plain.disable_after_seconds) == (None, None)


# --- any entry: read or refused, never echoing a url or a secret -------------------------------------------

TOKEN = "s3cr3t-t0k3n"
PLANTED = [f"https://hooks.example.com/in?token={TOKEN}", f"ssm:/x?{TOKEN}", SECRET]
config_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10) | st.sampled_from(PLANTED),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)
ENTRY_FIELDS = [
    *("name", "kind", "url", "events", "audience", "roles", "instances", "include_typing", "timeout_seconds"),
    *("secrets", "allow_http", "allow_private_network", "allow_literal_secrets", "max_per_second"),
    *("disable_after_hours", "retry_schedule", "retry_client_errors", "bucket", "queue_arn"),
]


@settings(max_examples=300)
@given(overrides=st.dictionaries(st.sampled_from(ENTRY_FIELDS), config_values, max_size=5))
def test_any_entry_is_read_or_refused_without_echoing_a_url_or_a_secret(overrides: dict[str, Any]) -> None:
    """Given any entry (urls with tokens and secrets planted in its values), then it is read, or refused with
    messages that carry none of them."""
    document = {"version": 1, "destinations": [entry(**overrides)]}
    try:
        parse_relay_config(document, source="t")
    except RelayConfigError as exc:
        refusal = str(exc)
    else:
        return
    assert TOKEN not in refusal
    assert SECRET.removeprefix("whsec_") not in refusal
