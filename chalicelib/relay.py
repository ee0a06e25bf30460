"""Publishing an event: the destinations that want it, their secrets, the concurrent delivery, and a durable copy
of every delivery that failed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from chalicelib.adapters.secrets import SecretUnavailableError
from chalicelib.delivery import DeliveryResult
from chalicelib.observability import count, logger

if TYPE_CHECKING:
    from chalicelib.adapters.quarantine import Quarantine
    from chalicelib.adapters.secrets import SecretResolver
    from chalicelib.delivery import Fanout, WebhookTarget
    from chalicelib.destinations import Destination, RelayConfig
    from chalicelib.events import RelayEvent


class Relay:
    """Delivers each event to every destination whose filters accept it."""

    def __init__(
        self,
        config: Callable[[], RelayConfig],
        secrets: SecretResolver,
        fanout: Fanout,
        quarantine: Quarantine,
    ) -> None:
        self._config = config
        self._secrets = secrets
        self._fanout = fanout
        self._quarantine = quarantine

    def publish(self, event: RelayEvent, *, max_timeout_seconds: float | None = None) -> list[DeliveryResult]:
        """Deliver ``event``; failed deliveries are kept in the quarantine's ``undelivered/`` for replay.

        ``max_timeout_seconds`` shortens the destinations' own timeouts when a caller is waiting.
        """
        targets: list[tuple[WebhookTarget, Sequence[str]]] = []
        unresolved: list[DeliveryResult] = []
        for destination in self._config().destinations:
            if not destination.accepts(event):
                self._keep_undecided(destination, event)
                continue
            try:
                secrets = [self._secrets.resolve(ref) for ref in destination.secrets]
            except SecretUnavailableError as exc:
                logger.error("webhook secret unavailable", extra={"destination": destination.name, "reason": str(exc)})
                count("DeliveryFailed")
                unresolved.append(DeliveryResult.unsent(event, destination.name, f"not sent: {exc}", retryable=True))
                continue
            target = destination
            if max_timeout_seconds is not None and destination.timeout_seconds > max_timeout_seconds:
                target = replace(destination, timeout_seconds=max_timeout_seconds)
            targets.append((target, secrets))
        results = self._fanout.deliver(event, targets) + unresolved
        for result in results:
            if not result.ok:
                key = self._quarantine.keep_undelivered(event, result)
                logger.info("undelivered event kept", extra={"destination": result.destination, "key": key})
        return results

    def _keep_undecided(self, destination: Destination, event: RelayEvent) -> None:
        """Fail closed, but keep: an event a filter of ``destination`` cannot decide on is kept, not dropped."""
        reason = destination.undecided(event)
        if reason is None:
            return
        key = self._quarantine.keep_undecided(event, destination.name, reason)
        logger.warning(
            "event kept: a destination filter cannot decide on it",
            extra={"destination": destination.name, "webhook_id": event.webhook_id, "reason": reason, "key": key},
        )
        count("FilterUndecided")
