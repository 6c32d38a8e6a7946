"""Provider clients per account, built on demand: the only place credentials are decrypted."""

from __future__ import annotations

from typing import Any

import httpx

from lipwa import metrics
from lipwa.providers.momo.client import MomoClient
from lipwa.providers.momo.credentials import MomoCredentials
from lipwa.providers.mpesa.client import MpesaClient
from lipwa.providers.mpesa.credentials import MpesaCredentials
from lipwa.providers.tokens import TokenCache
from lipwa.store.tables import ProviderAccount
from lipwa.vault import Vault


class ProviderRegistry:
    def __init__(
        self,
        vault: Vault,
        http: httpx.AsyncClient,
        tokens: TokenCache,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
    ) -> None:
        self._vault = vault
        self._http = http
        self._tokens = tokens
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._clients: dict[tuple[str, str], Any] = {}

    def _cache_key(self, account: ProviderAccount) -> tuple[str, str]:
        # A credential change (new seal) builds a new client and so a new token.
        return (account.id, account.secrets_sealed[-16:])

    def mpesa(self, account: ProviderAccount) -> MpesaClient:
        key = self._cache_key(account)
        client = self._clients.get(key)
        if client is None:
            secret = self._vault.open(account.secrets_sealed, bound_to=account.id)
            cfg = account.config
            credentials = MpesaCredentials(
                consumer_key=secret["consumer_key"],
                consumer_secret=secret["consumer_secret"],
                shortcode=cfg["shortcode"],
                kind=cfg["kind"],
                passkey=secret["passkey"],
                till_number=cfg.get("till_number"),
                initiator_name=cfg.get("initiator_name"),
                initiator_password=secret.get("initiator_password"),
                certificate_pem=cfg.get("certificate_pem"),
                b2c_shortcode=cfg.get("b2c_shortcode"),
            )
            client = MpesaClient(
                account_key=f"{account.id}:{key[1]}",
                base_url=account.base_url,
                credentials=credentials,
                http=self._http,
                tokens=self._tokens,
                connect_timeout=self._connect_timeout_s,
                read_timeout=self._read_timeout_s,
            )
            self._clients[key] = metrics.instrument_client(client, "mpesa")
        assert isinstance(client, MpesaClient)
        return client

    def momo(self, account: ProviderAccount) -> MomoClient:
        key = self._cache_key(account)
        client = self._clients.get(key)
        if client is None:
            secret = self._vault.open(account.secrets_sealed, bound_to=account.id)
            credentials = MomoCredentials(
                api_user=account.config["api_user"],
                api_key=secret["api_key"],
                subscription_keys=dict(secret["subscription_keys"]),
                target_environment=account.config["target_environment"],
                currency=account.currency,
            )
            client = MomoClient(
                account_key=f"{account.id}:{key[1]}",
                base_url=account.base_url,
                credentials=credentials,
                http=self._http,
                tokens=self._tokens,
                connect_timeout=self._connect_timeout_s,
                read_timeout=self._read_timeout_s,
            )
            self._clients[key] = metrics.instrument_client(client, "momo")
        assert isinstance(client, MomoClient)
        return client
