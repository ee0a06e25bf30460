"""SecretResolver against emulated SSM Parameter Store and Secrets Manager (moto)."""

from __future__ import annotations

import base64
import traceback
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib import clients
from chalicelib.adapters.secrets import SecretResolver, SecretUnavailableError
from chalicelib.destinations import SecretRef

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
ROTATED = "whsec_" + base64.b64encode(bytes(range(140, 180))).decode()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials and moto's in-memory AWS; never a real account."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL_SECRETS_MANAGER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield


@pytest.fixture
def ssm(aws: None) -> Any:
    """An SSM client on moto."""
    return boto3.client("ssm")


@pytest.fixture
def secretsmanager(aws: None) -> Any:
    """A Secrets Manager client on moto."""
    return boto3.client("secretsmanager")


def count_calls(client: Any) -> Counter[str]:
    """Counts the API calls ``client`` makes, by operation name."""
    calls: Counter[str] = Counter()

    def record(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    client.meta.events.register("before-call", record)
    return calls


def no_client() -> Any:
    raise AssertionError("no AWS client should be created")


def resolver_over(*, ssm: Any = None, secretsmanager: Any = None, **options: Any) -> SecretResolver:
    """A resolver over the given moto clients; a service not given must not be called."""
    return SecretResolver(
        ssm=(lambda: ssm) if ssm is not None else no_client,
        secretsmanager=(lambda: secretsmanager) if secretsmanager is not None else no_client,
        **options,
    )


def test_reads_an_ssm_securestring_once_within_max_age(ssm):
    """Given a SecureString parameter, when it is resolved twice, then it is decrypted and fetched once."""
    ssm.put_parameter(Name="/relay/test/crm", Value=SECRET, Type="SecureString")
    calls = count_calls(ssm)
    resolver = resolver_over(ssm=ssm)

    assert resolver.resolve(SecretRef("ssm", "/relay/test/crm")) == SECRET
    assert resolver.resolve(SecretRef("ssm", "/relay/test/crm")) == SECRET
    assert calls == Counter({"GetParameter": 1})


def test_reads_secrets_manager_by_name_and_arn_with_caching(secretsmanager):
    """Given a secret, when resolved by name twice and by ARN, then each reference is fetched once."""
    arn = secretsmanager.create_secret(Name="relay/test/billing", SecretString=SECRET)["ARN"]
    calls = count_calls(secretsmanager)
    resolver = resolver_over(secretsmanager=secretsmanager)

    for _ in range(2):
        assert resolver.resolve(SecretRef("secretsmanager", "relay/test/billing")) == SECRET
        assert resolver.resolve(SecretRef("secretsmanager", arn)) == SECRET
    assert calls == Counter({"GetSecretValue": 2})


def test_reads_a_binary_secret(secretsmanager):
    """Given a secret stored as SecretBinary, then its text is the secret."""
    secretsmanager.create_secret(Name="relay/test/binary", SecretBinary=SECRET.encode())
    resolver = resolver_over(secretsmanager=secretsmanager)
    assert resolver.resolve(SecretRef("secretsmanager", "relay/test/binary")) == SECRET


def test_rotation_is_seen_after_max_age(ssm):
    """Given max_age 0, when the parameter changes, then the next resolve returns the new value."""
    ssm.put_parameter(Name="/relay/test/rotating", Value=SECRET, Type="SecureString")
    resolver = resolver_over(ssm=ssm, max_age_seconds=0)
    assert resolver.resolve(SecretRef("ssm", "/relay/test/rotating")) == SECRET

    ssm.put_parameter(Name="/relay/test/rotating", Value=ROTATED, Type="SecureString", Overwrite=True)
    assert resolver.resolve(SecretRef("ssm", "/relay/test/rotating")) == ROTATED


def test_clients_are_created_lazily_the_ordinary_way(aws):
    """Given no clients, when a reference is resolved, then boto3's default client reads it."""
    boto3.client("ssm").put_parameter(Name="/relay/test/lazy", Value=SECRET, Type="SecureString")
    assert (
        SecretResolver(ssm=clients.ssm, secretsmanager=clients.secretsmanager).resolve(
            SecretRef("ssm", "/relay/test/lazy")
        )
        == SECRET
    )


def test_literal_refs_are_returned_without_aws():
    """Given a literal ref, then its value is returned and no AWS client is made."""
    resolver = resolver_over()
    assert resolver.resolve(SecretRef("literal", SECRET)) == SECRET


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        (SecretRef("ssm", "/relay/test/missing"), "ssm:/relay/test/missing is unavailable (ParameterNotFound)"),
        (
            SecretRef("secretsmanager", "relay/test/missing"),
            "secretsmanager:relay/test/missing is unavailable (ResourceNotFoundException)",
        ),
    ],
)
def test_missing_secret_names_the_reference(ssm, secretsmanager, ref, reason):
    """Given a reference to nothing, then SecretUnavailableError names the reference and AWS's error code."""
    ssm.put_parameter(Name="/relay/test/present", Value=SECRET, Type="SecureString")
    resolver = resolver_over(ssm=ssm, secretsmanager=secretsmanager)
    resolver.resolve(SecretRef("ssm", "/relay/test/present"))

    with pytest.raises(SecretUnavailableError) as caught:
        resolver.resolve(ref)

    assert str(caught.value) == f"secret {reason}"
    assert caught.value.ref == ref
    assert SECRET[6:] not in "".join(traceback.format_exception(caught.value))


@pytest.mark.parametrize(
    "value",
    [
        "hunter2-is-not-a-webhook-secret",
        "whsec_" + base64.b64encode(b"too short").decode(),
        "whsec_" + base64.b64encode(bytes(65)).decode(),
    ],
)
def test_malformed_secret_value_is_refused_without_showing_it(ssm, value):
    """Given a parameter that is not a Standard Webhooks secret, then it is refused and its value never shown."""
    ssm.put_parameter(Name="/relay/test/bad", Value=value, Type="SecureString")
    resolver = resolver_over(ssm=ssm)

    with pytest.raises(SecretUnavailableError) as caught:
        resolver.resolve(SecretRef("ssm", "/relay/test/bad"))

    assert str(caught.value) == (
        "secret ssm:/relay/test/bad is not a Standard Webhooks secret (whsec_ + base64 of 24 to 64 bytes)"
    )
    shown = "".join(traceback.format_exception(caught.value)) + repr(caught.value)
    assert value.removeprefix("whsec_") not in shown


def test_plain_base64_secret_is_accepted(ssm):
    """Given base64 without the whsec_ prefix (Standard Webhooks accepts both), then it is returned."""
    plain = SECRET.removeprefix("whsec_")
    ssm.put_parameter(Name="/relay/test/plain", Value=plain, Type="SecureString")
    assert resolver_over(ssm=ssm).resolve(SecretRef("ssm", "/relay/test/plain")) == plain
