"""Signing secrets from SSM Parameter Store and Secrets Manager, through Powertools Parameters.

Powertools keeps each value for ``max_age`` seconds, so a warm container asks AWS at most once per secret per
five minutes, and a rotated secret is picked up within that time. The AWS clients are made on first use: a
stage whose destinations all use one kind of reference never creates the other client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aws_lambda_powertools.utilities.parameters import GetParameterError, SecretsProvider, SSMProvider
from botocore.exceptions import ClientError

from chalicelib.destinations import SecretRef, is_webhook_secret
from chalicelib.errors import RelayError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_ssm import SSMClient

MAX_AGE_SECONDS = 300


class SecretUnavailableError(RelayError):
    """A secret could not be read, or is not a Standard Webhooks secret; names the reference, never the value."""

    def __init__(self, ref: SecretRef, problem: str) -> None:
        super().__init__(f"secret {ref} {problem}")
        self.ref = ref


class SecretResolver:
    """Turns a destination's :class:`SecretRef` into the secret's value, cached for ``max_age_seconds``."""

    def __init__(
        self,
        *,
        ssm: Callable[[], SSMClient],
        secretsmanager: Callable[[], SecretsManagerClient],
        max_age_seconds: int = MAX_AGE_SECONDS,
    ) -> None:
        # Client factories, called on first use: a destination with SSM secrets only never builds the other.
        self._ssm = ssm
        self._secretsmanager = secretsmanager
        self._max_age = max_age_seconds
        self._ssm_provider: SSMProvider | None = None
        self._secrets_provider: SecretsProvider | None = None

    def resolve(self, ref: SecretRef) -> str:
        """The secret's value; :class:`SecretUnavailableError` when it cannot be read or is malformed."""
        if ref.kind == "literal":
            value: object = ref.name
        else:
            try:
                value = self._fetch(ref)
            except GetParameterError as exc:
                raise SecretUnavailableError(ref, f"is unavailable ({_reason(exc)})") from None
        if isinstance(value, bytes):
            value = value.decode("ascii", errors="replace")
        if not isinstance(value, str) or not is_webhook_secret(value.strip()):
            raise SecretUnavailableError(ref, "is not a Standard Webhooks secret (whsec_ + base64 of 24 to 64 bytes)")
        return value.strip()

    def _fetch(self, ref: SecretRef) -> object:
        if ref.kind == "ssm":
            if self._ssm_provider is None:
                self._ssm_provider = SSMProvider(boto3_client=self._ssm())
            return self._ssm_provider.get(ref.name, max_age=self._max_age, decrypt=True)
        if self._secrets_provider is None:
            self._secrets_provider = SecretsProvider(boto3_client=self._secretsmanager())
        return self._secrets_provider.get(ref.name, max_age=self._max_age)


def _reason(exc: GetParameterError) -> str:
    # Powertools wraps the boto3 error in a message-only exception; its code is all a log needs.
    cause = exc.__context__
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code", "ClientError"))
    return type(cause).__name__ if cause is not None else "unknown error"
