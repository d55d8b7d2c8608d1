"""This gateway's membership of its installation's gateway directory (``gateway.serving.gateway_directory``).

From start to stop a gateway is listed there, with where replicas reach its channel hub and its role, by a
heartbeat thread (every 2 s, also through a long deployment, so that it is never dropped for silence).
The deploying gateway publishes each catalog it applied, and publishes it again should the directory have
restarted empty; an attached one reads what was published.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from backends.channel_wire import ChannelInvite, GatewayAddress
from backends.gateway_listing import ALIVE_S
from gateway.serving.gateway_directory import (
    ATTACHED,
    ATTACHING,
    DEPLOYING,
    DirectoryClient,
    Published,
)

logger = logging.getLogger(__name__)

HEARTBEAT_S = 2.0


class GatewayConflict(RuntimeError):
    """Another live gateway deploys this installation's catalog: this one must attach, not deploy."""


class Membership:
    def __init__(
        self,
        installation: str | None,
        gateway: str,
        attach: bool,
        address: Callable[[], GatewayAddress | None],
    ) -> None:
        self.gateway = gateway
        self._installation = installation
        self._attach = attach
        self._address = address
        self._directory: DirectoryClient | None = None
        self._serving = False
        self._published: tuple[dict[str, Any], dict[str, str]] | None = None
        self._accountant: str | None = None
        self._stop = threading.Event()
        self._beater: threading.Thread | None = None

    def join(self) -> None:
        """Be listed (after Ray is connected); a deploying gateway is refused while another deploys."""
        self._directory = DirectoryClient(self._installation, self.gateway)
        if not self._attach:
            published = self._directory.published()
            deployer = None if published is None else published.deployer
            if deployer in self._directory.others() and not self._outlived(str(deployer)):
                raise GatewayConflict(
                    f"gateway {deployer} deploys this installation's catalog on this cluster; "
                    "start this one with --attach (or give it its own MAAS_INSTALLATION)"
                )
        self._register()
        self._beater = threading.Thread(target=self._heartbeat, name="maas-directory", daemon=True)
        self._beater.start()

    def _outlived(self, deployer: str) -> bool:
        """Whether the listed deploying gateway ``deployer`` is gone: its entry expires with no heartbeat
        meanwhile (a deployer restarted at once finds its predecessor still listed, for up to ``ALIVE_S``).
        False as soon as it beats again: it lives, and this gateway must attach instead."""
        started = time.monotonic()
        logger.info("deploying gateway listed, waiting for a heartbeat or its expiry gateway=%s", deployer)
        while time.monotonic() - started < ALIVE_S + 2 * HEARTBEAT_S:
            ago = self.directory.seen_ago(deployer)
            if ago is None:
                return True
            if ago + 0.5 < time.monotonic() - started:  # registered again since this gateway asked
                return False
            time.sleep(0.5)
        return False

    @property
    def directory(self) -> DirectoryClient:
        assert self._directory is not None, "join() first"
        return self._directory

    def _register(self) -> None:
        role = DEPLOYING if not self._attach else ATTACHED if self._serving else ATTACHING
        self._accountant = self.directory.register(self._address(), role)

    def accounts_for_replicas(self) -> bool:
        """Whether this gateway accrues the installation's replica time and chip-hour cost
        (``GatewayDirectory.accountant``); before it is listed, a deploying gateway does."""
        if self._accountant is None:
            return not self._attach
        return self._accountant == self.gateway

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._register()
                if self._published is not None and self.directory.published() is None:
                    self.directory.publish(*self._published)  # the directory restarted empty
            except Exception as exc:  # the next beat tries again
                logger.warning("gateway directory unreachable error=%s", type(exc).__name__)

    def serving(self) -> None:
        """This gateway answers requests from now on (attached workers are waited for until they do)."""
        self._serving = True
        self._register()

    def invite(self, app: str, release: str) -> ChannelInvite:
        return self.directory.invite(app, release)

    def members(self) -> dict[str, object]:
        """This gateway's id and every live gateway of the installation with its role (a call to Ray)."""
        return {"id": self.gateway, "members": self.directory.members()}

    def attached(self) -> list[str]:
        """The attached gateways of this installation that are serving."""
        return self.directory.others(ATTACHED)

    def publish(self, catalog: dict[str, Any], releases: dict[str, str]) -> None:
        assert not self._attach
        self._published = (catalog, releases)
        self.directory.publish(catalog, releases)

    def published(self, wait_s: float = 0.0) -> Published | None:
        return self.directory.wait_published(wait_s)

    def stop(self) -> None:
        """End the heartbeat (idempotent)."""
        self._stop.set()
        if self._beater is not None:
            self._beater.join(timeout=15)

    def leave(self) -> list[str]:
        """Stop the heartbeat and unregister; the other live gateways of this installation."""
        self.stop()
        if self._directory is None:
            return []
        try:
            self._directory.unregister()
            return self._directory.others()
        except Exception as exc:  # the directory is gone too: nobody else is known
            logger.warning("gateway directory unreachable on stop error=%s", type(exc).__name__)
            return []
