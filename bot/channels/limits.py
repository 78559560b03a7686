"""Rate limits for the web channels (REST, website, pupil): per sender and per client address, with 429.

Each sender and each client address has a token bucket (``SCHOOLGUIDE_RATE_LIMIT_PER_SENDER`` and
``SCHOOLGUIDE_RATE_LIMIT_PER_IP`` messages a minute, refilled continuously; 0 switches a limit off). Buckets
live in memory, in bounded caches: a flood of new senders can only evict other buckets (which then start
full), never grow the process.

A limit never swallows a first disclosure: a message over the limit is run through the safeguarding detector
first, and if it may be a disclosure (or the detector fails: recall first) it is let through, once per sender
per minute. A sender who keeps sending disclosure-like messages is limited after that one; their first is
already recorded and the DSL alerted.

Behind a reverse proxy every request comes from the proxy: tell Sanic to trust its forwarded address
(``SANIC_PROXIES_COUNT=1``, or ``SANIC_REAL_IP_HEADER``) and the limit applies to the real client. A loopback
peer with no forwarded address (this machine: the tests, the bench, a same-host proxy not so configured) has
no per-address limit, as all its clients would share one bucket; the per-sender limit still applies.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable
from functools import lru_cache

from cachetools import TTLCache
from sanic.request import Request

from bot.settings import Settings

logger = logging.getLogger(__name__)

PERIOD_SECONDS = 60.0
MAX_TRACKED = 100_000


class RateLimiter:
    """A token bucket per key: ``rate`` hits per ``period`` seconds, refilled continuously."""

    def __init__(
        self, rate: int, period: float = PERIOD_SECONDS, maxsize: int = MAX_TRACKED, clock=time.monotonic
    ) -> None:
        self.rate, self.period, self._clock = rate, period, clock
        # A bucket untouched for a whole period is full again, so expiring it loses nothing.
        self._buckets: TTLCache = TTLCache(maxsize=maxsize, ttl=period, timer=clock)

    def hit(self, key: str) -> float:
        """Take one token for ``key``: 0 if allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        tokens, last = self._buckets.get(key, (float(self.rate), now))
        tokens = min(float(self.rate), tokens + (now - last) * self.rate / self.period)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) * self.period / self.rate


def _may_be_disclosure(text: str) -> bool:
    if text.strip().startswith("/disclose"):  # the pupil page's "Talk to a grown-up" button
        return True
    try:
        from bot.safeguarding.detector import assess

        return assess(text).is_disclosure
    except Exception:  # a detector that cannot answer must not turn a disclosure away
        logger.exception("rate limit: the detector failed; letting the message through")
        return True


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (an address or ``localhost``) is this machine."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def client_address(request: Request) -> str | None:
    """The client's address for the per-address limit: the proxy-forwarded one, else the peer if remote."""
    forwarded = request.remote_addr  # set only when Sanic is told to trust a proxy
    if forwarded:
        return forwarded
    return None if is_loopback(request.ip) else request.ip


class WebLimits:
    """The per-sender and per-address limits shared by the web channels, with the disclosure exemption."""

    def __init__(
        self,
        per_sender: int,
        per_ip: int,
        period: float = PERIOD_SECONDS,
        clock=time.monotonic,
        may_be_disclosure: Callable[[str], bool] = _may_be_disclosure,
    ) -> None:
        self.senders = RateLimiter(per_sender, period, clock=clock)
        self.addresses = RateLimiter(per_ip, period, clock=clock)
        self.conversations = RateLimiter(per_ip, period, clock=clock)
        self._exempted: TTLCache = TTLCache(maxsize=MAX_TRACKED, ttl=period, timer=clock)
        self._may_be_disclosure = may_be_disclosure

    def message(self, sender: str, address: str | None, text: str) -> int | None:
        """None to let a message through, else the Retry-After seconds for a 429."""
        wait = self.senders.hit(sender)
        if address:
            wait = max(wait, self.addresses.hit(address))
        if wait == 0:
            return None
        if sender not in self._exempted and self._may_be_disclosure(text):
            self._exempted[sender] = True
            logger.warning("rate limit: over the limit but may be a disclosure; let through")
            return None
        return max(1, math.ceil(wait))

    def new_conversation(self, address: str | None) -> int | None:
        """None to issue a widget conversation id, else the Retry-After seconds."""
        wait = self.conversations.hit(address) if address else 0.0
        return max(1, math.ceil(wait)) if wait else None


@lru_cache(maxsize=4)
def _shared(per_sender: int, per_ip: int) -> WebLimits:
    return WebLimits(per_sender, per_ip)


def shared_limits(settings: Settings) -> WebLimits:
    """One set of limits per process, shared by the REST and widget channels (one address, one budget)."""
    return _shared(settings.rate_limit_per_sender, settings.rate_limit_per_ip)


def platform_too_many_reply(retry_after: int) -> str:
    """What a Slack or Teams user is told, once a minute, when their messages are over the limit."""
    return (
        "You have sent a lot of messages in the last minute, so I have not read your last one. "
        f"Please send it again in about {retry_after} seconds. If a child may be at risk, speak to your "
        "DSL now."
    )
