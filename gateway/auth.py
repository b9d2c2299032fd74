"""Optional subscriber auth: a JWT that lists the channels its holder may read.

Off unless a key is configured (``SSE_AUTH_HS256_SECRET``,
``SSE_AUTH_RS256_PUBLIC_KEY`` and/or ``SSE_AUTH_JWKS_URL``). The token comes
from, in this order, an ``Authorization: Bearer`` header, a ``token`` query
parameter (EventSource cannot set headers), or the ``SSE_AUTH_COOKIE`` cookie.

Each key verifies exactly one algorithm: the token's ``alg`` header picks the
key and PyJWT is told to accept only that algorithm for it, so ``alg: none``
and alg confusion (an HS256 token "signed" with the RSA public key) fail.
Tokens must carry ``exp``; ``aud`` and ``iss`` are checked when configured.
A token is good until its ``exp``: the grant says when, and the stream ends then.

Keys from a JWKS URL (``JwksKeys``) are found by the token's ``kid``, which is
then required; RS256 and ES256 keys are used, each for its own algorithm. They
are fetched in a thread (never on the event loop), kept, and fetched again when a
token names an unknown ``kid``, at most once per cooldown: a flood of made-up
``kid``s costs one fetch per cooldown, not one per request.

The channel claim (``channels`` by default) is a list of exact channel names
and prefix patterns ending in ``*``: ``["echo", "room.*"]`` grants ``echo``,
``room.1`` and ``room.lobby``; ``["*"]`` grants every channel. The publish claim
(``publish`` by default, for HTTP publish) lists the channels a token may write,
in the same syntax; a token without it may only read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt import PyJWK, PyJWKClient
from jwt.exceptions import PyJWKClientError, PyJWKError, PyJWKSetError
from starlette.requests import Request

from contract.channels import is_valid_channel
from gateway.errors import (
    ChannelForbidden,
    ExpiredToken,
    InvalidToken,
    MissingToken,
    PublishForbidden,
)

log = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 8192
MIN_RSA_BITS = 2048
MIN_HS256_SECRET_BYTES = 32
_REALM = 'Bearer realm="redis-sse-gateway"'
# A pattern's fixed part uses the channel alphabet, so it can only match real names.
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.:\-]{0,63}")


def load_rs256_public_key(pem: str) -> RSAPublicKey:
    """An RSA public key from PEM text; ValueError says what is wrong with it."""
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a PEM public key ({exc})") from None
    if not isinstance(key, RSAPublicKey):
        raise ValueError(f"an RSA key is needed for RS256, this is a {type(key).__name__}")
    if key.key_size < MIN_RSA_BITS:
        raise ValueError(f"the RSA key has {key.key_size} bits, at least {MIN_RSA_BITS} are needed")
    return key


@dataclass(frozen=True)
class ChannelGrant:
    """The channels a token may read: exact names and name prefixes."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]

    @classmethod
    def from_claim(cls, claim: object) -> ChannelGrant:
        """Parse the claim's value; ValueError says what is wrong with it."""
        if not isinstance(claim, list) or not all(isinstance(item, str) for item in claim):
            raise ValueError("it must be a list of strings")
        exact: set[str] = set()
        prefixes: list[str] = []
        for item in claim:
            if item.endswith("*") and _PREFIX_RE.fullmatch(item[:-1]):
                prefixes.append(item[:-1])
            elif is_valid_channel(item):
                exact.add(item)
            else:
                raise ValueError(
                    f"{item[:80]!r} is neither a channel name nor a prefix pattern like 'room.*'"
                )
        return cls(frozenset(exact), tuple(prefixes))

    def allows(self, channel: str) -> bool:
        return channel in self.exact or channel.startswith(self.prefixes)

    def describe(self) -> str:
        items = sorted(self.exact) + [f"{prefix}*" for prefix in self.prefixes]
        return ", ".join(items) or "no channel"


@dataclass(frozen=True)
class Grant:
    """What a valid token grants: its channels, until when, and to whom."""

    channels: ChannelGrant
    expires_at: float
    """The token's ``exp`` (seconds since the epoch): the stream ends then."""
    subject: str | None = None
    """The token's ``sub``, for the per-subject stream limit."""

    def seconds_left(self) -> float:
        return self.expires_at - time.time()


JWKS_ALGORITHMS = ("RS256", "ES256")


class JwksKeys:
    """The signing keys a JWKS URL publishes, by ``kid``; one per app.

    ``refresh_for(kid)`` is what a request with an unknown ``kid`` awaits: one fetch
    at a time (in a thread, through PyJWT's ``PyJWKClient``), and none sooner than
    ``cooldown`` seconds after the last. ``aclose`` cancels a fetch still running.
    """

    def __init__(self, url: str, *, cooldown: float, timeout: float = 5.0) -> None:
        self.url = url
        self._client = PyJWKClient(url, cache_keys=False, cache_jwk_set=False, timeout=timeout)
        self._cooldown = cooldown
        self._keys: dict[str, PyJWK] = {}
        self._last_fetch = -math.inf
        self._fetch: asyncio.Task[None] | None = None
        self.fetches = 0
        self.problem: str | None = None
        """Why the last fetch failed; None after a good one."""

    def key(self, kid: str) -> PyJWK | None:
        return self._keys.get(kid)

    def refresh_for(self, kid: str) -> Awaitable[None] | None:
        """Something to await before a token naming ``kid`` can be checked, or None:
        the key is known, or the keys were fetched too recently to ask again."""
        if kid in self._keys:
            return None
        fetch = self._fetch
        if fetch is None:
            if time.monotonic() - self._last_fetch < self._cooldown:
                return None
            self._last_fetch = time.monotonic()
            fetch = self._fetch = asyncio.create_task(self._refresh(), name="jwks-fetch")
        # Shielded: a client leaving must not cancel the fetch others wait for.
        return asyncio.shield(fetch)

    async def _refresh(self) -> None:
        self.fetches += 1
        try:
            jwk_set = await asyncio.to_thread(self._client.get_jwk_set, True)
        except (PyJWKClientError, PyJWKSetError, PyJWKError, ValueError) as exc:
            # ValueError: a body that is not JSON, which PyJWT lets through unwrapped.
            self.problem = f"cannot fetch the keys at {self.url}: {exc}"
            log.warning("%s", self.problem)
            return
        finally:
            self._fetch = None
        self._keys = {
            key.key_id: key
            for key in jwk_set.keys
            if key.key_id
            and key.public_key_use in ("sig", None)
            and key.algorithm_name in JWKS_ALGORITHMS
        }
        self.problem = None
        log.info("JWKS: %d signing keys from %s", len(self._keys), self.url)

    async def aclose(self) -> None:
        """Cancel and await a fetch still running."""
        fetch = self._fetch
        if fetch is not None:
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetch


class TokenVerifier:
    """Checks subscription tokens against the configured keys; one per app."""

    def __init__(
        self,
        keys: Mapping[str, Any],
        *,
        jwks: JwksKeys | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        claim: str = "channels",
        publish_claim: str = "publish",
        cookie: str = "sse_token",
    ) -> None:
        if not keys and jwks is None:
            raise ValueError("a TokenVerifier needs at least one key")
        self._keys = dict(keys)
        self.jwks = jwks
        self._audience = audience
        self._issuer = issuer
        self._claim = claim
        self._publish_claim = publish_claim
        self.cookie = cookie

    def token_from(self, request: Request, query_token: str | None) -> str:
        """The request's token: Authorization header, then ``token`` query, then cookie."""
        authorization = request.headers.get("authorization")
        if authorization is not None:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise InvalidToken(
                    "the Authorization header is not of the form 'Bearer <token>'",
                    "send 'Authorization: Bearer <jwt>'",
                    headers={"WWW-Authenticate": f'{_REALM}, error="invalid_request"'},
                )
            return token.strip()
        token = query_token or request.cookies.get(self.cookie, "")
        if not token:
            raise MissingToken(
                "this gateway needs a token to subscribe",
                "send 'Authorization: Bearer <jwt>', add ?token=<jwt> to the URL, "
                f"or set the {self.cookie!r} cookie",
                headers={"WWW-Authenticate": _REALM},
            )
        return token

    def key_fetch(self, request: Request, query_token: str | None) -> Awaitable[None] | None:
        """What to await before ``authorize`` can check this request's token: a fetch of
        the JWKS keys when the token names a ``kid`` not known yet; None otherwise (a bad
        token is left for ``authorize`` to refuse)."""
        if self.jwks is None:
            return None
        try:
            header = jwt.get_unverified_header(self.token_from(request, query_token))
        except (jwt.InvalidTokenError, InvalidToken, MissingToken):
            return None
        kid = header.get("kid")
        return self.jwks.refresh_for(kid) if isinstance(kid, str) else None

    def _key(self, header: Mapping[str, Any]) -> tuple[Any, str]:
        """The key that must have signed a token with this header, and its one algorithm."""
        alg, kid = header.get("alg"), header.get("kid")
        jwks = self.jwks
        if jwks is not None and (kid is not None or alg not in self._keys):
            if not isinstance(kid, str):
                raise _invalid("the token has no 'kid' header naming the key that signed it")
            key = jwks.key(kid)
            if key is None:
                problem = f" ({jwks.problem})" if jwks.problem else ""
                raise _invalid(f"no key with kid {kid[:80]!r} at {jwks.url}{problem}")
            if alg != key.algorithm_name:
                raise _invalid(
                    f"the token is signed with alg {alg!r}; key {kid!r} is for "
                    f"{key.algorithm_name} only"
                )
            return key.key, alg
        if not isinstance(alg, str) or alg not in self._keys:
            accepted = sorted(self._keys) + (list(JWKS_ALGORITHMS) if jwks else [])
            raise _invalid(
                f"the token is signed with alg {alg!r}; "
                f"this gateway accepts {' and '.join(accepted)} only"
            )
        return self._keys[alg], alg

    def decode_claims(self, token: str) -> dict[str, Any]:
        """The claims of a token whose signature, ``exp``, ``aud`` and ``iss`` hold;
        raises InvalidToken (401) otherwise."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise _invalid(f"the token is {len(token)} characters long, at most {MAX_TOKEN_LENGTH}")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise _invalid(f"the token is not a JWT: {exc}") from None
        key, alg = self._key(header)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],  # pinned per key: the header cannot pick another algorithm
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise ExpiredToken(
                "the token has expired",
                "get a new token and reconnect with it",
                headers={"WWW-Authenticate": f'{_REALM}, error="invalid_token"'},
            ) from None
        except jwt.InvalidSignatureError:
            raise _invalid("the token's signature does not match this gateway's key") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _invalid(f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidAudienceError:
            expected = repr(self._audience) if self._audience else "none (SSE_AUTH_AUDIENCE unset)"
            raise _invalid(f"the token's 'aud' claim does not match; expected {expected}") from None
        except jwt.InvalidIssuerError:
            raise _invalid(f"the token's 'iss' claim is not {self._issuer!r}") from None
        except jwt.InvalidTokenError as exc:
            raise _invalid(f"the token is invalid: {exc}") from None
        return claims

    def verify(self, token: str) -> Grant:
        """What a valid token grants to a subscriber; raises InvalidToken (401) otherwise."""
        claims = self.decode_claims(token)
        if self._claim not in claims:
            raise _invalid(f"the token has no {self._claim!r} claim listing its channels")
        try:
            channels = ChannelGrant.from_claim(claims[self._claim])
        except ValueError as exc:
            raise _invalid(f"the token's {self._claim!r} claim is malformed: {exc}") from None
        subject = claims.get("sub")
        return Grant(channels, float(claims["exp"]), subject if isinstance(subject, str) else None)

    def authorize(
        self, request: Request, query_token: str | None, channels: Sequence[str]
    ) -> Grant:
        """The request's grant; raises 401 unless it holds a valid token, 403 unless that
        token grants ``channels``."""
        grant = self.verify(self.token_from(request, query_token))
        refused = [channel for channel in channels if not grant.channels.allows(channel)]
        if refused:
            raise ChannelForbidden(
                f"the token does not grant channel{'s' if len(refused) > 1 else ''} "
                f"{', '.join(map(repr, refused))}; it grants {grant.channels.describe()}",
                f"subscribe only to channels the token's {self._claim!r} claim covers, "
                "or get a token that covers these",
                headers={"WWW-Authenticate": f'{_REALM}, error="insufficient_scope"'},
            )
        return grant

    def authorize_publish(self, request: Request, channel: str) -> None:
        """Raise 401 unless the request holds a valid token, 403 unless the token's publish
        claim covers ``channel``. The token comes from the header or the cookie: a URL
        (which proxies log) never carries one that may write."""
        try:
            token = self.token_from(request, None)
        except MissingToken as exc:
            raise MissingToken(
                "this gateway needs a token to publish",
                f"send 'Authorization: Bearer <jwt>' with a token whose {self._publish_claim!r}"
                " claim lists the channel",
                headers=exc.headers,
            ) from None
        claim = self.decode_claims(token).get(self._publish_claim)
        if claim is None:
            raise _publish_forbidden(
                f"the token has no {self._publish_claim!r} claim: it may not publish",
                self._publish_claim,
            )
        try:
            grant = ChannelGrant.from_claim(claim)
        except ValueError as exc:
            raise _invalid(
                f"the token's {self._publish_claim!r} claim is malformed: {exc}"
            ) from None
        if not grant.allows(channel):
            raise _publish_forbidden(
                f"the token may not publish to channel {channel!r}; its"
                f" {self._publish_claim!r} claim grants {grant.describe()}",
                self._publish_claim,
            )


def _publish_forbidden(message: str, claim: str) -> PublishForbidden:
    return PublishForbidden(
        message,
        f"publish with a token whose {claim!r} claim lists this channel (or a pattern like"
        " 'room.*' covering it)",
        headers={"WWW-Authenticate": f'{_REALM}, error="insufficient_scope"'},
    )


def _invalid(message: str) -> InvalidToken:
    return InvalidToken(
        message,
        "get a token signed by this gateway's issuer and send it as 'Authorization: Bearer <jwt>'",
        headers={"WWW-Authenticate": f'{_REALM}, error="invalid_token"'},
    )
