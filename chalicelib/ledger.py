"""The delivery ledger: which (destination, ``webhook-id``) pairs have already been answered 2xx.

A crash, an SNS redelivery or a Lambda retry in the middle of a fan-out publishes an event again; the relay asks
the ledger first and skips the destinations that already took it. The ledger only ever says "delivered" for a
pair it was told about, and it forgets after its time to live (a few days, longer than any retry schedule), so
asking it can only spare a duplicate, never lose a delivery. When it cannot be read, the relay delivers anyway
(at least once beats at most once); when it cannot be written, a later redelivery may arrive twice, with the same
``webhook-id``, which consumers deduplicate on.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from chalicelib.errors import RelayError

# (destination name, webhook-id)
Pair = tuple[str, str]


class DeliveryLedgerError(RelayError):
    """The ledger could not be read or written (an AWS failure); the message names no secret."""


class DeliveryLedger(Protocol):
    """Shared by every container; one read and one write per event (or per retry batch)."""

    def delivered(self, pairs: Collection[Pair]) -> set[Pair]:
        """Those of ``pairs`` known to have been delivered; a pair the store could not answer for is left out."""
        ...

    def record(self, pairs: Collection[Pair]) -> None:
        """Remember that each of ``pairs`` was answered 2xx (idempotent: recording a pair again changes nothing)."""
        ...
