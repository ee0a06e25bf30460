"""Publishing an event: the destinations that want it, their health, their secrets, the concurrent delivery, and a
durable copy of every delivery that failed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

from chalicelib.adapters.secrets import SecretUnavailableError
from chalicelib.delivery import DeliveryResult
from chalicelib.errors import RelayError
from chalicelib.observability import count, logger

if TYPE_CHECKING:
    from chalicelib.adapters.quarantine import Quarantine
    from chalicelib.adapters.secrets import SecretResolver
    from chalicelib.aws_delivery import AwsDelivery
    from chalicelib.delivery import Fanout, WebhookTarget
    from chalicelib.destinations import Destination, RelayConfig
    from chalicelib.events import RelayEvent
    from chalicelib.health import EndpointHealth, Gate, ReplayProgress


class DestinationUnknownError(RelayError):
    """No destination of that name is configured."""


class Relay:
    """Delivers each event to every destination whose filters accept it and whose health lets it through: webhooks
    and the AWS kinds alike."""

    def __init__(
        self,
        config: Callable[[], RelayConfig],
        secrets: SecretResolver,
        fanout: Fanout,
        quarantine: Quarantine,
        health: EndpointHealth,
        *,
        aws: AwsDelivery,
    ) -> None:
        self._config = config
        self._secrets = secrets
        self._fanout = fanout
        self._quarantine = quarantine
        self._health = health
        self._aws = aws
        # AWS writes run beside the webhook fan-out rather than after it.
        self._writers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="destination-write")

    def publish(self, event: RelayEvent, *, max_timeout_seconds: float | None = None) -> list[DeliveryResult]:
        """Deliver ``event``; failed deliveries are kept in the quarantine's ``undelivered/`` for replay, and a
        disabled destination's are parked (``held="parked"``).

        ``max_timeout_seconds`` shortens the destinations' own timeouts when a caller is waiting.
        """
        wanted = []
        for destination in self._config().destinations:
            if destination.accepts(event):
                wanted.append(destination)
            else:
                self._keep_undecided(destination, event)
        return self._deliver(event, wanted, max_timeout_seconds=max_timeout_seconds, replay=False)

    def enable(
        self,
        name: str,
        *,
        time_left: Callable[[], float],
        on_replayed: Callable[[ReplayProgress], None] | None = None,
    ) -> ReplayProgress:
        """Re-enable a destination: its parked events go out in order through this relay's delivery path."""
        destination = self.destination(name)
        return self._health.enable(
            name,
            lambda event: self._deliver(event, [destination], replay=True)[0],
            time_left=time_left,
            on_replayed=on_replayed,
        )

    def destination(self, name: str) -> Destination:
        """The configured destination called ``name``."""
        for destination in self._config().destinations:
            if destination.name == name:
                return destination
        raise DestinationUnknownError(f"no destination is called {name!r}")

    def _deliver(
        self,
        event: RelayEvent,
        destinations: Sequence[Destination],
        *,
        max_timeout_seconds: float | None = None,
        replay: bool,
    ) -> list[DeliveryResult]:
        targets: list[tuple[WebhookTarget, Sequence[str]]] = []
        held: list[DeliveryResult] = []
        writes = []
        for destination in destinations:
            gate = self._health.gate(destination, event, replay=replay)
            if gate.decision != "deliver":
                held.append(_held(event, destination.name, gate))
                continue
            if destination.target is not None:
                writes.append(self._writers.submit(self._aws.deliver, destination, [event]))
                continue
            try:
                secrets = [self._secrets.resolve(ref) for ref in destination.secrets]
            except SecretUnavailableError as exc:
                logger.error("webhook secret unavailable", extra={"destination": destination.name, "reason": str(exc)})
                count("DeliveryFailed")
                held.append(DeliveryResult.unsent(event, destination.name, f"not sent: {exc}", retryable=True))
                continue
            target = destination
            if max_timeout_seconds is not None and destination.timeout_seconds > max_timeout_seconds:
                target = replace(destination, timeout_seconds=max_timeout_seconds)
            targets.append((target, secrets))
        by_name = {destination.name: destination for destination in destinations}
        results = [
            replace(result, held="parked")
            if self._health.record(by_name[result.destination], event, result, replay=replay)
            else result
            for result in self._fanout.deliver(event, targets)
        ]
        written = [result for write in writes for result in write.result()]
        _count(written)
        results += [
            replace(result, held="parked")
            if self._health.record(by_name[result.destination], event, result, replay=replay)
            else result
            for result in written
        ]
        results += held
        for result in results:
            # A parked event waits in the health store; a replayed one that was deferred is still parked.
            if not result.ok and result.held != "parked" and not (replay and result.held == "deferred"):
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


def _held(event: RelayEvent, destination: str, gate: Gate) -> DeliveryResult:
    if gate.decision == "parked":
        return replace(
            DeliveryResult.unsent(event, destination, f"parked: {gate.reason}", retryable=False), held="parked"
        )
    return replace(
        DeliveryResult.unsent(event, destination, f"deferred: {gate.reason}", retryable=True),
        held="deferred",
        retry_after_seconds=gate.retry_after_seconds,
    )


def _count(written: Sequence[DeliveryResult]) -> None:
    """The AWS kinds' outcomes in the delivery metrics (the fan-out records its own)."""
    succeeded = sum(result.ok for result in written)
    if succeeded:
        count("DeliverySucceeded", succeeded)
    if succeeded < len(written):
        count("DeliveryFailed", len(written) - succeeded)
