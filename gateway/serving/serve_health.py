"""Whether a gateway's models are up: each deployment's status and healthy replicas as Serve reports them
(polled every 2 s), and whether the Ray head this gateway started is still there.

A status Ray has not refreshed for ``STALE_AFTER_S`` is not believed (``RAY_UNREACHABLE``); a private head
that exited, or stayed unreachable for ``LOST_AFTER_S``, took every replica with it (``lost``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gateway.serving.local_client import LocalModelClient
from gateway.serving.ray_head import RayHead
from gateway.serving.serve_status import read_serve_status

logger = logging.getLogger(__name__)

RAY_UNREACHABLE = "RAY_UNREACHABLE"
STALE_AFTER_S = 10.0
"""A model status not refreshed for this long is not believed: Ray is not answering."""
LOST_AFTER_S = 30.0
"""A private head unreachable this long is taken as lost (its replicas with it): the gateway stops."""


class ServeHealth:
    """The runtime's statuses; it shares the runtime's tables of what is deployed (read, never written)."""

    def __init__(
        self,
        prefix: str,
        target_replicas: dict[str, int],
        local: dict[str, LocalModelClient],
        units: dict[str, list[str]],
        head: Callable[[], RayHead | None],
    ) -> None:
        self._prefix = prefix
        self._target_replicas = target_replicas  # Serve application -> replicas asked for
        self._local = local  # deployments served in this process
        self._units = units  # model -> its deployments' names
        self._head = head
        self._statuses: dict[str, str] = {}
        self._healthy: dict[str, int] = {}
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._polled_at = time.monotonic()  # the last status read that Ray answered
        self.lost: str | None = None
        """Why this gateway can serve nothing any more (its private Ray head is gone), once it is so."""

    def refresh(self) -> None:
        """Read every deployment's status from Serve now."""
        status = read_serve_status(self._prefix, self._target_replicas)
        statuses, healthy = status.statuses, status.healthy
        for name in list(self._local):  # served by this process: up while the gateway is
            statuses[name], healthy[name] = "RUNNING", 1
        self._statuses, self._healthy = statuses, healthy
        self._polled_at = time.monotonic()

    def _check_head(self) -> None:
        """A private head that exited, or stayed unreachable, took every replica with it."""
        head = self._head()
        if head is None or self.lost is not None:
            return
        code = head.process.poll()
        if code is not None:
            self.lost = f"the private Ray head exited (code {code})"
        elif time.monotonic() - self._polled_at > LOST_AFTER_S:
            self.lost = f"the private Ray head did not answer for {LOST_AFTER_S:.0f} s"
        if self.lost is not None:
            logger.error("ray lost: %s; every replica is gone, the gateway stops", self.lost)

    def start(self, period_s: float = 2.0) -> None:
        def loop() -> None:
            while not self._stop.wait(period_s):
                self._check_head()
                try:
                    self.refresh()
                except Exception as exc:  # the next poll tries again
                    logger.warning("health poll failed error=%s", type(exc).__name__)
                self._check_head()

        self._poller = threading.Thread(target=loop, name="maas-health", daemon=True)
        self._poller.start()

    def _ray_answers(self) -> bool:
        return self.lost is None and time.monotonic() - self._polled_at <= STALE_AFTER_S

    def deployment_statuses(self) -> dict[str, str]:
        """Each deployment's status; ``RAY_UNREACHABLE`` for the Serve ones while Ray does not answer,
        never the last status it gave."""
        if self._ray_answers():
            return dict(self._statuses)
        return {d: "RUNNING" if d in self._local else RAY_UNREACHABLE for d in self._statuses}

    def statuses(self) -> dict[str, str]:
        """Each model's status: RUNNING while any of its deployments runs (requests go there), else its
        first deployment's."""
        by_deployment = self.deployment_statuses()
        statuses = {}
        for model, names in self._units.items():
            known = [by_deployment[n] for n in names if n in by_deployment]
            if known:
                statuses[model] = "RUNNING" if "RUNNING" in known else known[0]
        return statuses

    def healthy_replicas(self) -> dict[str, int]:
        """Each deployment's running replicas."""
        if self._ray_answers():
            return dict(self._healthy)
        return {d: n if d in self._local else 0 for d, n in self._healthy.items()}

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
