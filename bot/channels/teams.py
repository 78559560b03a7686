"""Microsoft Teams for staff: Rasa's Bot Framework connector, made to work with single-tenant Azure bots.

Rasa 3.6's ``BotFrameworkInput`` cannot be used as it is:

* its outgoing token comes from the multi-tenant endpoint (``login.microsoftonline.com/botframework.com``),
  which new (single-tenant) Azure bots are refused by; here the token comes from the school's own tenant
  (``login.microsoftonline.com/<tenant>/oauth2/v2.0/token``, client-credentials grant, scope
  ``https://api.botframework.com/.default``) and is cached until shortly before it expires;
* it checks an incoming token's signature and audience but not its issuer, takes the algorithm from the
  token's own header, never checks the ``serviceurl`` claim or the key's channel endorsements, fetches the
  keys with blocking calls from a hard-coded URL (and fails to start when that is unreachable), and answers
  a malformed body with a server error.

:class:`JwtValidator` does what the Bot Connector's authentication spec asks of a bot: the OpenID metadata
document gives the ``jwks_uri`` and signing algorithms; the keys are fetched and cached by PyJWT's
``PyJWKClient`` (:class:`BotFrameworkKeys`: refreshed daily, and when a token names a key we do not know, at
most once a minute; run in a worker thread, as it blocks; the last keys fetched are kept while a refresh
fails); the token is checked by ``jwt.decode``: signed with one of those keys (RS256), issued by the Bot
Framework (``https://api.botframework.com``; other issuers can be configured), for this bot (``aud`` = app
id), in date (5 minutes' clock skew, as the spec allows), and, when it names a ``serviceurl``, naming the one
in the activity. Anything else is a 401 and nothing is processed; no keys at all (Microsoft unreachable on
the first request) is a 503.

Every message from Teams is treated as coming from **staff** of the deployment's default school (metadata
``{"audience": "staff", "school": ..., "channel": "teams"}``): restrict who can install the app in the Teams
admin centre (see docs/teams/README.md). The webhook is ``/webhooks/teams/webhook``.

Message text is cleaned like the web channels' and cut to their 10,000 characters (as Slack's is), and each
person is limited to ``SCHOOLGUIDE_RATE_LIMIT_PER_SENDER`` messages a minute by the web channels' limiter
(:mod:`bot.channels.limits`), whose disclosure exemption lets a message that may be a disclosure through (once
per person per minute); a refused message is acknowledged (200) and the first one in a minute gets a reply
saying to send it again shortly.

An activity the Bot Framework delivers again is answered once: its (conversation id, activity id) is
remembered in memory and, given ``dedupe_database_url`` (``schoolguide run`` gives it the tracker store's),
for an hour in a table shared by every Rasa process and kept across restarts (:mod:`bot.channels.dedupe`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import jwt
from cachetools import TTLCache
from rasa.core.channels.botframework import BotFramework, BotFrameworkInput
from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels.dedupe import EventDeduplicator
from bot.channels.limits import PERIOD_SECONDS, WebLimits, platform_too_many_reply, shared_limits
from bot.channels.validation import cut_message
from bot.settings import Settings, get_settings

logger = logging.getLogger(__name__)

CHANNEL_NAME = "teams"
DEFAULT_OPENID_METADATA_URL = "https://login.botframework.com/v1/.well-known/openidconfiguration"
BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
BOT_FRAMEWORK_SCOPE = "https://api.botframework.com/.default"
MICROSOFT_LOGIN = "https://login.microsoftonline.com"
# The Bot Connector spec allows 5 minutes of clock skew.
CLOCK_SKEW_SECONDS = 300
# Keys are refreshed daily, and when a token names an unknown key (at most this often, so that junk tokens
# cannot make us hammer Microsoft).
KEYS_MAX_AGE_SECONDS = 24 * 3600
UNKNOWN_KEY_REFRESH_SECONDS = 60
# An access token is renewed this long before it expires (or half its lifetime, if that is shorter).
TOKEN_RENEW_MARGIN_SECONDS = 300
HTTP_TIMEOUT_SECONDS = 15
# Activity ids remembered so that a re-delivered message is not answered (or recorded) twice.
SEEN_ACTIVITIES = 10_000
RSA_ALGORITHMS = ("RS256", "RS384", "RS512")
BEARER = re.compile(r"Bearer\s+(\S+)\s*$", re.IGNORECASE)
MENTION = re.compile(r"<at>[^<]*</at>", re.IGNORECASE)
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
# Activity types a custom payload may be sent as; SchoolGuide's own payloads (``policy_answer``...) are for
# the web widgets and are not sent to Teams (the text already carries the answer and its citation).
ACTIVITY_TYPES = {"message", "typing"}


def token_url_for(tenant_id: str) -> str:
    """The tenant's token endpoint (what single-tenant bots must use)."""
    return f"{MICROSOFT_LOGIN}/{quote(tenant_id, safe='')}/oauth2/v2.0/token"


class AuthError(Exception):
    """The request is not from the Bot Framework for this bot (answered with 401)."""


class KeysUnavailable(Exception):
    """The signing keys could not be fetched, so no token can be checked (answered with 503)."""


class TokenError(Exception):
    """No access token could be obtained for sending replies."""


async def _get_json(url: str) -> Any:
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(url) as resp:
            if resp.status != 200:
                raise KeysUnavailable(f"GET {url} answered {resp.status}")
            return await resp.json(content_type=None)


@dataclass
class VerifiedToken:
    """A token that passed :meth:`JwtValidator.validate`: its claims and the endorsements of its key."""

    claims: dict[str, Any]
    endorsements: tuple[str, ...] | None = None


@dataclass(frozen=True)
class _Metadata:
    """What the OpenID metadata document says: where the keys are, which algorithms, which issuer."""

    jwks_uri: str
    algorithms: tuple[str, ...]
    issuer: str | None
    fetched_at: float


class BotFrameworkKeys(jwt.PyJWKClient):
    """The Bot Framework's signing keys, fetched and cached by PyJWT's :class:`jwt.PyJWKClient`.

    PyJWKClient fetches the JWKS with urllib (``timeout`` seconds, redirects refused), keeps it for
    ``lifespan`` seconds, and when a token names a key id it does not know fetches it again, at most once
    every ``cooldown_duration`` seconds (so junk tokens cannot make us hammer Microsoft). It is synchronous:
    :class:`JwtValidator` calls it in a worker thread. Two things are added for the Bot Framework:

    * each key's ``endorsements`` (the channels it may sign for), which :class:`jwt.PyJWK` does not keep;
    * the last key set fetched is kept for when a refresh fails: an outage at Microsoft does not lock staff
      out while the keys they were signed with are known (PyJWT caches what ``fetch_data`` returns, so the
      kept set serves another ``lifespan``; a key id it does not know is still fetched for, as above).
    """

    def __init__(self, uri: str, *, lifespan: float, cooldown: float, timeout: float) -> None:
        super().__init__(
            uri,
            cache_jwk_set=True,
            lifespan=lifespan,
            timeout=timeout,
            cooldown_duration=cooldown,
        )
        self.endorsements: dict[str, tuple[str, ...] | None] = {}
        self.fetches = 0
        self._last_good: dict[str, Any] | None = None
        # One lookup at a time: the key and its endorsements come from the same fetch.
        self._lookup_lock = threading.Lock()

    def fetch_data(self) -> Any:
        try:
            data = super().fetch_data()
        except (jwt.PyJWKClientError, jwt.PyJWKSetError) as exc:
            if self._last_good is None:
                raise
            logger.warning("Teams: could not refresh the signing keys, using the last ones: %s", exc)
            return self._last_good
        keys = data.get("keys") if isinstance(data, dict) else None
        endorsements: dict[str, tuple[str, ...] | None] = {}
        for key in keys if isinstance(keys, list) else []:
            if isinstance(key, dict) and isinstance(key.get("kid"), str):
                channels = key.get("endorsements")
                endorsements[key["kid"]] = tuple(channels) if isinstance(channels, list) else None
        self.endorsements = endorsements
        self._last_good = data
        self.fetches += 1
        logger.debug("Teams: %d signing keys from %s", len(endorsements), self.uri)
        return data

    def lookup(self, kid: str) -> tuple[jwt.PyJWK, tuple[str, ...] | None]:
        """The key named ``kid`` and its endorsements (blocking: fetches when the cache says so).

        Raises :class:`KeysUnavailable` when there are no keys at all, :class:`AuthError` for a key id
        that is not among them.
        """
        with self._lookup_lock:
            try:
                self.get_signing_keys()
            except (jwt.PyJWKClientError, jwt.PyJWKSetError) as exc:
                raise KeysUnavailable(f"could not read the signing keys from {self.uri}: {exc}") from exc
            try:
                key = self.get_signing_key(kid)
            except (jwt.PyJWKClientError, jwt.PyJWKSetError) as exc:
                raise AuthError(f"the token is signed with an unknown key ({kid!r})") from exc
            return key, self.endorsements.get(kid)


class JwtValidator:
    """Checks the bearer token on an incoming Bot Framework request (see the module docstring).

    The OpenID metadata document (``jwks_uri``, algorithms, issuer) is fetched here, with aiohttp, and kept
    for ``keys_max_age`` seconds (the one fetched before is kept while a refresh fails, retried after
    ``unknown_key_refresh`` seconds); the keys are :class:`BotFrameworkKeys` (PyJWT's client); the token is
    checked by :func:`jwt.decode`.
    """

    def __init__(
        self,
        app_id: str,
        metadata_url: str = DEFAULT_OPENID_METADATA_URL,
        issuers: Iterable[str] | None = None,
        *,
        leeway: float = CLOCK_SKEW_SECONDS,
        keys_max_age: float = KEYS_MAX_AGE_SECONDS,
        unknown_key_refresh: float = UNKNOWN_KEY_REFRESH_SECONDS,
        timeout: float = HTTP_TIMEOUT_SECONDS,
    ) -> None:
        if not app_id:
            raise ValueError("the app id is needed to check the token's audience")
        self.app_id = app_id
        self.metadata_url = metadata_url
        # None: derived from the metadata document's "issuer" (https://api.botframework.com for Microsoft's).
        self.issuers = tuple(issuers) if issuers else None
        self.leeway = leeway
        self.keys_max_age = keys_max_age
        self.unknown_key_refresh = unknown_key_refresh
        self.timeout = timeout
        self.keys: BotFrameworkKeys | None = None
        self._metadata: _Metadata | None = None
        self._lock = asyncio.Lock()

    @property
    def refreshes(self) -> int:
        """How many times the key set has been fetched."""
        return self.keys.fetches if self.keys else 0

    async def _fetch_metadata(self) -> _Metadata:
        try:
            metadata = await _get_json(self.metadata_url)
            jwks_uri = metadata["jwks_uri"]
            if not isinstance(jwks_uri, str):
                raise TypeError("jwks_uri is not a string")
            algorithms = tuple(
                a
                for a in metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
                if a in RSA_ALGORITHMS
            )
        except KeysUnavailable:
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, TypeError) as exc:
            raise KeysUnavailable(
                f"could not read the OpenID metadata at {self.metadata_url}: {exc!r}"
            ) from exc
        issuer = metadata.get("issuer")
        return _Metadata(
            jwks_uri=jwks_uri,
            algorithms=algorithms or ("RS256",),
            issuer=issuer if isinstance(issuer, str) else None,
            fetched_at=time.monotonic(),
        )

    async def metadata(self) -> tuple[_Metadata, BotFrameworkKeys]:
        """The metadata document's contents and the key client for its ``jwks_uri``."""
        async with self._lock:
            current = self._metadata
            if current is None or time.monotonic() - current.fetched_at >= self.keys_max_age:
                try:
                    fresh = await self._fetch_metadata()
                except KeysUnavailable as exc:
                    if current is None or self.keys is None:
                        raise
                    logger.warning("Teams: could not refresh the OpenID metadata, using the last: %s", exc)
                    # Try again after unknown_key_refresh seconds, not on every request meanwhile.
                    retry_at = time.monotonic() - self.keys_max_age + self.unknown_key_refresh
                    self._metadata = replace(current, fetched_at=retry_at)
                else:
                    if self.keys is None or self.keys.uri != fresh.jwks_uri:
                        try:
                            self.keys = BotFrameworkKeys(
                                fresh.jwks_uri,
                                lifespan=self.keys_max_age,
                                cooldown=self.unknown_key_refresh,
                                timeout=self.timeout,
                            )
                        except jwt.PyJWKClientError as exc:  # not an http(s) URL
                            raise KeysUnavailable(f"unusable jwks_uri {fresh.jwks_uri!r}: {exc}") from exc
                    self._metadata = fresh
            assert self._metadata is not None and self.keys is not None
            return self._metadata, self.keys

    def accepted_issuers(self) -> tuple[str, ...]:
        if self.issuers:
            return self.issuers
        issuer = self._metadata.issuer if self._metadata else None
        return (issuer or BOT_FRAMEWORK_ISSUER,)

    async def validate(self, authorization: str | None) -> VerifiedToken:
        """Check an ``Authorization`` header; raise :class:`AuthError` unless it carries a valid token
        (:class:`KeysUnavailable` when the keys to check it with cannot be had)."""
        if not authorization:
            raise AuthError("no Authorization header")
        match = BEARER.match(authorization.strip())
        if not match:
            raise AuthError("the Authorization header is not a Bearer token")
        token = match.group(1)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"the token is not a JWT: {exc}") from exc
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("the token names no signing key")
        metadata, keys = await self.metadata()
        # The algorithms come from Microsoft's metadata, never from the token.
        algorithms = list(metadata.algorithms)
        if header.get("alg") not in algorithms:
            raise AuthError(f"the token's algorithm {header.get('alg')!r} is not allowed")
        # PyJWKClient blocks (urllib) when it fetches: in a worker thread, not on Sanic's event loop.
        signing_key, endorsements = await asyncio.get_running_loop().run_in_executor(None, keys.lookup, kid)
        if signing_key.key_type != "RSA":
            raise AuthError(f"signing key {kid!r} is not an RSA key")
        try:
            claims = jwt.decode(
                token,
                key=signing_key,
                algorithms=algorithms,
                audience=self.app_id,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"], "verify_iss": False},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"the token is not valid: {exc}") from exc
        if claims.get("iss") not in self.accepted_issuers():
            raise AuthError(f"the token's issuer {claims.get('iss')!r} is not accepted")
        return VerifiedToken(claims=claims, endorsements=endorsements)

    @staticmethod
    def check_activity(token: VerifiedToken, activity: dict[str, Any]) -> None:
        """The token must belong to this activity: same service URL, and a key endorsed for its channel."""
        claimed = token.claims.get("serviceurl", token.claims.get("serviceUrl"))
        if claimed is not None:
            actual = activity.get("serviceUrl")
            if not _same_url(claimed, actual):
                raise AuthError("the token's serviceurl does not match the activity's serviceUrl")
        if token.endorsements is not None:
            channel = activity.get("channelId")
            if channel not in token.endorsements:
                raise AuthError(f"the signing key is not endorsed for channel {channel!r}")


def _same_url(a: Any, b: Any) -> bool:
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    return a.rstrip("/") == b.rstrip("/")


def service_url_allowed(url: str) -> bool:
    """Where replies (and our access token) may be sent: HTTPS, or plain HTTP to this machine (tests)."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


class TokenProvider:
    """The bot's access token for the Bot Connector: client-credentials grant at the tenant's endpoint."""

    def __init__(
        self,
        app_id: str,
        app_password: str,
        token_url: str,
        *,
        scope: str = BOT_FRAMEWORK_SCOPE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app_id = app_id
        self.app_password = app_password
        self.token_url = token_url
        self.scope = scope
        self._clock = clock
        self._token: str | None = None
        self._renew_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    def invalidate(self) -> None:
        self._token = None

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                await self._fetch()
            assert self._token is not None
            return self._token

    async def _fetch(self) -> None:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.app_id,
            "client_secret": self.app_password,
            "scope": self.scope,
        }
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_SECONDS)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.post(self.token_url, data=form) as resp:
                    body = await resp.text()
                    if resp.status != 200:
                        # Entra ID's error body names the problem (AADSTS code), never the secret.
                        raise TokenError(
                            f"token endpoint {self.token_url} answered {resp.status}: {body[:500]}"
                        )
                    data = json.loads(body)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise TokenError(f"could not get a token from {self.token_url}: {exc!r}") from exc
        access_token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(access_token, str) or not access_token:
            raise TokenError(f"token endpoint {self.token_url} sent no access_token")
        try:
            lifetime = float(data.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        self._token = access_token
        self._renew_at = self._clock() + lifetime - min(TOKEN_RENEW_MARGIN_SECONDS, lifetime / 2)
        self.fetches += 1


class TeamsOutput(BotFramework):
    """Replies posted to the activity's service URL (``v3/conversations/{id}/activities``) with our token."""

    @classmethod
    def name(cls) -> str:
        return CHANNEL_NAME

    def __init__(
        self,
        tokens: TokenProvider,
        conversation: dict[str, Any],
        bot: dict[str, Any],
        service_url: str,
        user: dict[str, Any] | None = None,
        reply_to_id: str | None = None,
    ) -> None:
        super().__init__(tokens.app_id, tokens.app_password, conversation, bot, service_url)
        self.tokens = tokens
        # The person's Teams account (Rasa's sender id is "teams:<Entra object id>", not a Teams id).
        self.user = {k: v for k, v in (user or {}).items() if k in ("id", "name")} or None
        self.reply_to_id = reply_to_id

    @property
    def activities_url(self) -> str:
        return f"{self.global_uri}conversations/{quote(str(self.conversation['id']), safe='')}/activities"

    async def _get_headers(self) -> dict[str, Any] | None:
        try:
            token = await self.tokens.token()
        except TokenError as exc:
            logger.error("Teams: no access token, so no reply can be sent: %s", exc)
            return None
        return {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}

    def prepare_message(self, recipient_id: str, message_data: dict[str, Any]) -> dict[str, Any]:
        data = super().prepare_message(recipient_id, message_data)
        if self.user:
            data["recipient"] = dict(self.user)
        data["conversation"] = {"id": self.conversation["id"]}
        if self.reply_to_id:
            data.setdefault("replyToId", self.reply_to_id)
        return data

    async def send(self, message_data: dict[str, Any]) -> None:
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_SECONDS)
        for attempt in (1, 2):
            headers = await self._get_headers()
            if headers is None:
                return
            try:
                async with aiohttp.ClientSession(timeout=timeout) as session:
                    async with session.post(self.activities_url, json=message_data, headers=headers) as resp:
                        if resp.status == 401 and attempt == 1:
                            # The token may have been revoked or rotated early: get a new one and retry once.
                            self.tokens.invalidate()
                            continue
                        if resp.status >= 300:
                            logger.error(
                                "Teams: posting a reply answered %s: %s",
                                resp.status,
                                (await resp.text())[:500],
                            )
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                logger.error("Teams: could not post a reply to %s: %r", self.activities_url, exc)
                return

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        # One activity per message, paragraphs kept: an answer and its "Source:" line stay together.
        message = self.prepare_message(recipient_id, {"text": text.strip(), "textFormat": "markdown"})
        await self.send(message)

    async def send_text_with_buttons(
        self, recipient_id: str, text: str, buttons: list[dict[str, Any]], **kwargs: Any
    ) -> None:
        actions = [
            {
                # messageBack: the bot gets the payload ("/policy_minimum_age"), the chat shows the title.
                "type": "messageBack",
                "title": b.get("title", ""),
                "text": b.get("payload", b.get("title", "")),
                "displayText": b.get("title", ""),
            }
            for b in buttons
        ]
        card = {
            "contentType": "application/vnd.microsoft.card.hero",
            "content": {"text": text, "buttons": actions},
        }
        await self.send(self.prepare_message(recipient_id, {"attachments": [card]}))

    async def send_custom_json(self, recipient_id: str, json_message: dict[str, Any], **kwargs: Any) -> None:
        if json_message.get("type", "message") not in ACTIVITY_TYPES:
            logger.debug(
                "Teams: not sending the %r payload (it is for the web widgets)", json_message.get("type")
            )
            return
        message = self.prepare_message(recipient_id, {})
        message.update(json_message)
        await self.send(message)


class TeamsInput(BotFrameworkInput):
    """Teams (Bot Framework) input channel for single-tenant bots; webhook ``/webhooks/teams/webhook``."""

    @classmethod
    def name(cls) -> str:
        return CHANNEL_NAME

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> InputChannel:
        if not credentials:
            cls.raise_missing_credentials_exception()
        missing = [k for k in ("app_id", "app_password", "tenant_id") if not credentials.get(k)]
        if missing:
            raise ValueError(f"the Teams channel needs {', '.join(missing)}")
        return cls(
            app_id=credentials["app_id"],
            app_password=credentials["app_password"],
            tenant_id=credentials["tenant_id"],
            openid_metadata_url=credentials.get("openid_metadata_url") or DEFAULT_OPENID_METADATA_URL,
            token_url=credentials.get("token_url"),
            school=credentials.get("school"),
            issuers=credentials.get("issuers"),
            dedupe_database_url=credentials.get("dedupe_database_url"),
        )

    def __init__(
        self,
        app_id: str,
        app_password: str,
        tenant_id: str,
        openid_metadata_url: str = DEFAULT_OPENID_METADATA_URL,
        token_url: str | None = None,
        school: str | None = None,
        issuers: Iterable[str] | None = None,
        dedupe_database_url: str | None = None,
        limits: WebLimits | None = None,
    ) -> None:
        # Rasa's __init__ is not called: it fetches the keys at once, blocking, from a fixed URL.
        self.app_id = app_id
        self.app_password = app_password
        self.tenant_id = tenant_id
        self.school = school
        self.validator = JwtValidator(app_id, openid_metadata_url, issuers)
        self.tokens = TokenProvider(app_id, app_password, token_url or token_url_for(tenant_id))
        self._tasks: set[asyncio.Task] = set()
        # Without a database URL, only this process remembers what it answered.
        self.dedupe = EventDeduplicator(CHANNEL_NAME, dedupe_database_url, capacity=SEEN_ACTIVITIES)
        # None: the process-wide per-sender limit the web channels use (SCHOOLGUIDE_RATE_LIMIT_PER_SENDER).
        self.limits = limits
        self._told_to_wait: TTLCache = TTLCache(maxsize=SEEN_ACTIVITIES, ttl=PERIOD_SECONDS)

    def _over_limit(self, sender: str, text: str, out_channel: TeamsOutput) -> int | None:
        """The Retry-After seconds when the sender is over the per-sender limit, as on the web channels
        (bot/channels/limits.py: a message that may be a disclosure still goes through, once per sender per
        minute), else None. The first refused message in a minute gets a reply saying so."""
        limits = self.limits or shared_limits(get_settings())
        retry_after = limits.message(sender, None, text)
        if not retry_after:
            return None
        logger.warning("Teams: %s is over the message rate limit; not handled", sender)
        if sender not in self._told_to_wait:
            self._told_to_wait[sender] = True
            reply = out_channel.send_text_message(sender, platform_too_many_reply(retry_after))
            self._run(reply, "a rate-limit reply")
        return retry_after

    async def _first_delivery(self, activity: dict[str, Any]) -> bool:
        """False for an activity already handled (the Bot Framework re-sends what it saw no answer to), by
        this process or, within the hour, any other sharing the dedupe database."""
        activity_id = activity.get("id")
        if not isinstance(activity_id, str) or not activity_id:
            return True
        key = f"activity:{activity['conversation']['id']}:{activity_id}"
        return not await self.dedupe.is_repeat([key])

    def get_metadata(self, request: Request | None = None) -> dict[str, Any]:
        metadata = {"audience": "staff", "channel": CHANNEL_NAME}
        if self.school:
            metadata["school"] = self.school
        return metadata

    def _tenant_matches(self, activity: dict[str, Any]) -> bool:
        """Activities from another Microsoft 365 tenant are refused (when the tenant is given as its GUID)."""
        if not GUID.match(self.tenant_id or ""):
            return True
        channel_data = activity.get("channelData")
        tenant = channel_data.get("tenant") if isinstance(channel_data, dict) else None
        tenant_id = tenant.get("id") if isinstance(tenant, dict) else None
        if tenant_id is None and isinstance(activity.get("conversation"), dict):
            tenant_id = activity["conversation"].get("tenantId")
        return tenant_id is None or str(tenant_id).lower() == self.tenant_id.lower()

    def _run(self, coro: Awaitable[Any], what: str) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                logger.error("Teams: handling %s failed", what, exc_info=t.exception())

        task.add_done_callback(done)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        teams = Blueprint("teams_webhook", __name__)

        @teams.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @teams.route("/webhook", methods=["POST"])
        async def webhook(request: Request) -> HTTPResponse:
            try:
                token = await self.validator.validate(request.headers.get("Authorization"))
            except AuthError as exc:
                logger.warning("Teams: request refused: %s", exc)
                return response.json({"error": "unauthorized"}, status=401)
            except KeysUnavailable as exc:
                logger.error("Teams: cannot check the request's token: %s", exc)
                return response.json({"error": "cannot verify the request now"}, status=503)

            try:
                activity = json.loads(request.body or b"")
            except (ValueError, UnicodeDecodeError):
                activity = None
            if not isinstance(activity, dict):
                return response.json(
                    {"error": "the body must be a Bot Framework activity (JSON object)"}, 400
                )

            try:
                JwtValidator.check_activity(token, activity)
            except AuthError as exc:
                logger.warning("Teams: request refused: %s", exc)
                return response.json({"error": "unauthorized"}, status=401)
            if not self._tenant_matches(activity):
                logger.warning("Teams: activity from another tenant refused")
                return response.json({"error": "this bot serves one school's tenant only"}, status=403)

            if activity.get("type") != "message":
                # conversationUpdate, installationUpdate, messageReaction...: nothing to answer.
                return response.json({"status": "ignored"})

            problem = _message_problem(activity)
            if problem:
                return response.json({"error": problem}, status=400)
            if not await self._first_delivery(activity):
                logger.info("Teams: activity %s delivered again; already handled", activity.get("id"))
                return response.json({"status": "duplicate"})

            recipient = activity.get("recipient")
            sender = sender_id(activity)
            text = _message_text(activity)
            out_channel = TeamsOutput(
                self.tokens,
                activity["conversation"],
                recipient if isinstance(recipient, dict) else {"id": f"28:{self.app_id}"},
                activity["serviceUrl"],
                user=activity["from"],
                reply_to_id=activity.get("id") if isinstance(activity.get("id"), str) else None,
            )
            retry_after = self._over_limit(sender, text, out_channel)
            if retry_after:
                # 200, not 429: the Bot Framework would only re-deliver it, and it is already remembered as
                # handled. The person has been told (once a minute) to send it again.
                return response.json({"status": "too many messages", "retry_after": retry_after})
            message = UserMessage(
                text=text,
                output_channel=out_channel,
                sender_id=sender,
                input_channel=self.name(),
                message_id=activity.get("id") if isinstance(activity.get("id"), str) else None,
                metadata=self.get_metadata(request),
            )
            # Answer the Bot Framework at once (it gives up after 15 s and retries); the reply is posted
            # to the service URL when it is ready.
            self._run(on_new_message(message), f"message {message.message_id}")
            return response.json({"status": "accepted"}, status=202)

        return teams


def _message_problem(activity: dict[str, Any]) -> str | None:
    conversation = activity.get("conversation")
    if not isinstance(conversation, dict) or not isinstance(conversation.get("id"), str):
        return "'conversation.id' must be a string"
    sender = activity.get("from")
    if not isinstance(sender, dict) or not isinstance(sender.get("id"), str) or not sender["id"]:
        return "'from.id' must be a string"
    service_url = activity.get("serviceUrl")
    if not isinstance(service_url, str) or not service_url_allowed(service_url):
        return "'serviceUrl' must be an https URL"
    if activity.get("text") is not None and not isinstance(activity.get("text"), str):
        return "'text' must be a string"
    return None


def sender_id(activity: dict[str, Any]) -> str:
    """``teams:<Entra object id>`` (in disclosure records too): IT can look it up in Entra -> Users.

    Falls back to the Teams account id (``29:...``, specific to this bot) when Teams sends no object id.
    """
    sender = activity["from"]
    object_id = sender.get("aadObjectId")
    return f"teams:{object_id if isinstance(object_id, str) and object_id else sender['id']}"


def _message_text(activity: dict[str, Any]) -> str:
    """The message text without Teams' ``<at>Bot</at>`` mention (sent when the bot is @-ed in a channel),
    cleaned and cut as Slack's is (``cut_message``)."""
    return cut_message(MENTION.sub(" ", activity.get("text") or ""), "Teams")


def credentials_entry(settings: Settings) -> tuple[str, dict[str, Any]] | None:
    """On when the app id, password (client secret) and tenant id are all set."""
    values = {
        "SCHOOLGUIDE_TEAMS_APP_ID": settings.teams_app_id,
        "SCHOOLGUIDE_TEAMS_APP_PASSWORD": settings.teams_app_password,
        "SCHOOLGUIDE_TEAMS_TENANT_ID": settings.teams_tenant_id,
    }
    missing = [name for name, value in values.items() if not value]
    if missing:
        if len(missing) < len(values):
            logger.warning("Microsoft Teams is not enabled: %s not set", ", ".join(missing))
        return None
    return f"{__name__}.{TeamsInput.__name__}", {
        "app_id": settings.teams_app_id,
        "app_password": settings.teams_app_password,
        "tenant_id": settings.teams_tenant_id,
        "openid_metadata_url": settings.teams_openid_metadata_url,
        "token_url": settings.teams_token_url or token_url_for(settings.teams_tenant_id),
        "school": settings.default_school,
        # Re-deliveries are remembered across processes in the tracker store's database (channels/dedupe.py).
        "dedupe_database_url": settings.tracker_database_url,
    }
