"""The participant connections the relay holds for two-way chats, kept in its streams table with their tokens
encrypted by KMS.

One item per chat, under a partition key no contact id can take (``chat-connection#<contact id>``), expiring by
TTL when the chat ends. The ConnectionToken and the ParticipantToken (kept to renew an expired connection) are
stored only as KMS ciphertexts bound to the chat by their encryption context, and never leave this module except
to the Participant Service.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from chalicelib.adapters.participant import ConnectionCredentials

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef
    from mypy_boto3_kms import KMSClient

_KEY_PREFIX: Final = "chat-connection#"
_PURPOSE: Final = "connect-chat-relay/participant-connection"


@dataclass(frozen=True)
class HeldConnection:
    """A chat's participant connection, as the relay holds it (tokens decrypted only when asked for)."""

    contact_id: str
    principal: str
    participant_id: str | None
    connection_expiry: str | None
    expires_at: int
    connection_ciphertext: bytes = field(repr=False)
    participant_ciphertext: bytes = field(repr=False)


class ChatConnections:
    """Reads and writes :class:`HeldConnection` items; encrypts and decrypts their tokens with one KMS key."""

    def __init__(self, dynamodb: DynamoDBClient, kms: KMSClient, table_name: str, key_id: str) -> None:
        self._dynamodb = dynamodb
        self._kms = kms
        self._table = table_name
        self._key_id = key_id

    def put(
        self,
        *,
        contact_id: str,
        principal: str,
        participant_id: str | None,
        participant_token: str,
        credentials: ConnectionCredentials,
        expires_at: int,
    ) -> HeldConnection:
        """Keep a new connection (overwriting the chat's previous one)."""
        held = HeldConnection(
            contact_id=contact_id,
            principal=principal,
            participant_id=participant_id,
            connection_expiry=credentials.expiry,
            expires_at=expires_at,
            connection_ciphertext=self._encrypt(credentials.token, contact_id, "connection"),
            participant_ciphertext=self._encrypt(participant_token, contact_id, "participant"),
        )
        self._write(held)
        return held

    def renewed(self, held: HeldConnection, credentials: ConnectionCredentials) -> HeldConnection:
        """Keep a renewed connection token in place of the expired one."""
        renewed = HeldConnection(
            contact_id=held.contact_id,
            principal=held.principal,
            participant_id=held.participant_id,
            connection_expiry=credentials.expiry,
            expires_at=held.expires_at,
            connection_ciphertext=self._encrypt(credentials.token, held.contact_id, "connection"),
            participant_ciphertext=held.participant_ciphertext,
        )
        self._write(renewed)
        return renewed

    def get(self, contact_id: str) -> HeldConnection | None:
        """The chat's connection, or None when the relay holds none (or the chat's time is over)."""
        answer = self._dynamodb.get_item(
            TableName=self._table, Key={"initial_contact_id": {"S": _KEY_PREFIX + contact_id}}, ConsistentRead=True
        )
        item = answer.get("Item")
        # DynamoDB deletes expired items lazily: an item past its TTL is gone for the relay.
        if not item or int(item["expires_at"]["N"]) < time.time():
            return None
        return HeldConnection(
            contact_id=item["contact_id"]["S"],
            principal=item["principal"]["S"],
            participant_id=item.get("participant_id", {}).get("S"),
            connection_expiry=item.get("connection_expiry", {}).get("S"),
            expires_at=int(item["expires_at"]["N"]),
            connection_ciphertext=bytes(item["connection_token"]["B"]),
            participant_ciphertext=bytes(item["participant_token"]["B"]),
        )

    def delete(self, contact_id: str) -> None:
        """Forget a chat's connection and its tokens."""
        self._dynamodb.delete_item(TableName=self._table, Key={"initial_contact_id": {"S": _KEY_PREFIX + contact_id}})

    def connection_token(self, held: HeldConnection) -> str:
        """The ConnectionToken, decrypted."""
        return self._decrypt(held.connection_ciphertext, held.contact_id, "connection")

    def participant_token(self, held: HeldConnection) -> str:
        """The ParticipantToken, decrypted (to renew the connection)."""
        return self._decrypt(held.participant_ciphertext, held.contact_id, "participant")

    def _write(self, held: HeldConnection) -> None:
        item: dict[str, AttributeValueTypeDef] = {
            "initial_contact_id": {"S": _KEY_PREFIX + held.contact_id},
            "contact_id": {"S": held.contact_id},
            "principal": {"S": held.principal},
            "connection_token": {"B": held.connection_ciphertext},
            "participant_token": {"B": held.participant_ciphertext},
            "expires_at": {"N": str(held.expires_at)},
        }
        if held.participant_id:
            item["participant_id"] = {"S": held.participant_id}
        if held.connection_expiry:
            item["connection_expiry"] = {"S": held.connection_expiry}
        self._dynamodb.put_item(TableName=self._table, Item=item)

    def _encrypt(self, token: str, contact_id: str, kind: str) -> bytes:
        answer = self._kms.encrypt(
            KeyId=self._key_id,
            Plaintext=token.encode("utf-8"),
            EncryptionContext=_context(contact_id, kind),
        )
        return answer["CiphertextBlob"]

    def _decrypt(self, ciphertext: bytes, contact_id: str, kind: str) -> str:
        answer = self._kms.decrypt(
            KeyId=self._key_id, CiphertextBlob=ciphertext, EncryptionContext=_context(contact_id, kind)
        )
        return answer["Plaintext"].decode("utf-8")


def _context(contact_id: str, kind: str) -> dict[str, str]:
    # A ciphertext decrypts only for its own chat and its own kind of token: a swapped item is useless.
    return {"purpose": _PURPOSE, "contact_id": contact_id, "token": kind}
