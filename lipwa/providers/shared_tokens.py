"""OAuth tokens shared by every process through Redis (when ``LIPWA_REDIS_URL`` is set).

Daraja says one token per app is safest (its FAQ claims a new token invalidates the old one,
unconfirmed): with several API and worker processes each minting its own, they could keep
invalidating each other's. So the processes share one token per account: the first that needs
one takes a short Redis lock and fetches it; the others wait for it to appear.

A token is a secret: it is stored sealed with the vault (AES-256-GCM, bound to its entry), under
a digest of the cache key (which itself holds a digest of the credentials), with Redis expiring
it when the token expires.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from lipwa.vault import Vault, VaultError

# Delete the entry only if it still holds what the caller saw (another process may have
# replaced it meanwhile): compare-and-delete in one step.
_DELETE_IF_SAME = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class SharedToken:
    token: str
    refresh_at: float  # wall clock (seconds since the epoch): fetch a new one after this
    expires_at: float  # wall clock: never hand it out after this


class SharedTokens:
    """One sealed token per cache key in Redis, and the lock that makes one process fetch it."""

    def __init__(
        self,
        redis: Redis,
        vault: Vault,
        prefix: str = "lipwa",
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._vault = vault
        self._prefix = prefix
        self.wall_clock = wall_clock
        self._delete_if_same = redis.register_script(_DELETE_IF_SAME)

    def _key(self, key: str, kind: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return f"{self._prefix}:{kind}:{digest}"

    async def read(self, key: str) -> tuple[SharedToken, bytes] | None:
        """The stored token and the raw entry (for ``drop``), or None. An entry that cannot
        be opened (a retired vault key) counts as none."""
        stored = await self._redis.get(self._key(key, "token"))
        if stored is None:
            return None
        raw = stored.encode() if isinstance(stored, str) else bytes(stored)
        try:
            entry = json.loads(raw)
            secret = self._vault.open(entry["sealed"], bound_to=self._key(key, "token"))
            found = SharedToken(secret["token"], entry["refresh_at"], entry["expires_at"])
        except (VaultError, ValueError, KeyError, TypeError):
            return None
        return (found, raw) if self.wall_clock() < found.expires_at else None

    async def write(self, key: str, found: SharedToken) -> bytes:
        """Store ``found`` until it expires; the raw entry (for ``drop``)."""
        name = self._key(key, "token")
        sealed = self._vault.seal({"token": found.token}, bound_to=name)
        entry = {"sealed": sealed, "refresh_at": found.refresh_at, "expires_at": found.expires_at}
        raw = json.dumps(entry).encode()
        ttl_ms = int((found.expires_at - self.wall_clock()) * 1000)
        if ttl_ms > 0:
            await self._redis.set(name, raw, px=ttl_ms)
        return raw

    async def drop(self, key: str, raw: bytes) -> None:
        """Forget the entry if it is still ``raw`` (the provider called its token invalid)."""
        await self._delete_if_same(keys=[self._key(key, "token")], args=[raw])

    async def lock(self, key: str, hold_s: float) -> str | None:
        """Take the fetch lock for ``key``: its owner mark, or None when another holds it. It
        lapses after ``hold_s`` so a process that died holding it blocks nobody for long."""
        owner = uuid.uuid4().hex
        taken = await self._redis.set(
            self._key(key, "token-lock"), owner, nx=True, px=int(hold_s * 1000)
        )
        return owner if taken else None

    async def unlock(self, key: str, owner: str) -> None:
        await self._delete_if_same(keys=[self._key(key, "token-lock")], args=[owner])

    async def close(self) -> None:
        await self._redis.aclose()
