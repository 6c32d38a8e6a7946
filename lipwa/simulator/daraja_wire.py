"""Wire-level building blocks of the Daraja simulator: errors, field rules, ids, credentials.

Everything here is pure (no Starlette routes, no simulator state) so the endpoint code in
``daraja.py`` / ``daraja_secured.py`` reads as a list of checks in Daraja's own order.
Facts come from ../shared/providers/daraja.md (sections cited as §n).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import math
import re
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from starlette.responses import JSONResponse

from lipwa.simulator.core import Simulator

KENYA = dt.timezone(dt.timedelta(hours=3), "EAT")
_DIGITS = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
_ALNUM = string.ascii_uppercase + string.digits


# ----- the demo app's credentials (fake; valid only against this simulator) ----------------
CONSUMER_KEY = "LIPWA-SIMULATOR-ONLY-consumer-key-not-real"
CONSUMER_SECRET = "LIPWA-SIMULATOR-ONLY-consumer-secret"
PAYBILL = "174379"
# Safaricom's public sandbox passkey (§5.1) so sandbox-configured clients work unchanged.
PAYBILL_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
STORE = "600100"  # till HO/store number: BusinessShortCode for CustomerBuyGoodsOnline
TILL = "600101"  # the till number: PartyB for CustomerBuyGoodsOnline
TILL_PASSKEY = hashlib.sha256(b"lipwa-simulator-till-600100").hexdigest()
B2C_SHORTCODE = "600997"
INITIATOR_NAME = "testapi"
INITIATOR_PASSWORD = "Safaricom999!*!"
C2B_SHORTCODE = "600984"
TEST_MSISDN = "254708374149"
B2C_FLOAT = Decimal(1_000_000)

STK_PASSKEYS = {PAYBILL: PAYBILL_PASSKEY, STORE: TILL_PASSKEY}
TILL_OF_STORE = {STORE: TILL}
C2B_SHORTCODES = {C2B_SHORTCODE, PAYBILL, TILL}
ORG_NAMES = {
    PAYBILL: "Lipwa Sim Paybill",
    STORE: "Lipwa Sim Store",
    TILL: "Lipwa Sim Till",
    C2B_SHORTCODE: "Lipwa Sim C2B",
    B2C_SHORTCODE: "Lipwa Sim B2C",
}
MAX_AMOUNT = 250_000
PAYBILL_ONLINE = "CustomerPayBillOnline"
BUY_GOODS_ONLINE = "CustomerBuyGoodsOnline"


# Outcomes that change delivery rather than the result; valid for every API family.
NO_CALLBACK = "no_callback"  # the result is final (query/status see it) but never called back
PENDING_FOREVER = "pending_forever"  # never resolves; STK query keeps saying "being processed"
QUEUE_TIMEOUT = "queue_timeout"  # secured APIs: a notice to QueueTimeOutURL, nothing executed
# Secured APIs: the request executes (a B2C pays), but its ResultURL callback reports the
# repeat M-Pesa saw (ResultCode 15 "Duplicate detected"); Transaction Status tells the truth.
DUPLICATE_DETECTED = "duplicate_detected"


# ----- errors ------------------------------------------------------------------------------
class DarajaError(Exception):
    """A synchronous Daraja error: ``{requestId, errorCode, errorMessage}`` (§3)."""

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.request_id = request_id

    @property
    def status(self) -> int:
        # HTTP status is the first three digits of the errorCode, so throttling is a 500.
        return int(self.code[:3])

    def response(self) -> JSONResponse:
        return JSONResponse(
            {
                "requestId": self.request_id or request_id(),
                "errorCode": self.code,
                "errorMessage": self.message,
            },
            status_code=self.status,
        )


def request_id() -> str:
    """An opaque id shaped like Daraja's (``1c5b-4ba8-815c-ac45c57a3db01495926``)."""
    h = uuid.uuid4().hex
    return f"{h[:4]}-{h[4:8]}-{h[8:12]}-{h[12:24]}{int(h[24:], 16) % 10**7:07d}"


def invalid(field: str) -> DarajaError:
    return DarajaError("400.002.02", f"Bad Request - Invalid {field}")


BAD_PAYLOAD = ("400.002.05", "Invalid Request Payload")
METHOD_NOT_ALLOWED = ("405.001", "Method Not Allowed")
NOT_FOUND = ("404.001.01", "Resource not found")
BAD_AUTH_HEADER = ("404.001.04", "Invalid Authentication Header")
SPIKE_ARREST = ("500.003.02", "System is busy. Please try again in few minutes.")
INTERNAL = ("500.003.1001", "Internal Server Error")
MERCHANT_UNKNOWN = ("500.001.1001", "Merchant does not exist")
WRONG_CREDENTIALS = ("500.001.1001", "Wrong credentials")
SUBSCRIBER_LOCKED = (
    "500.001.1001",
    "Unable to lock subscriber, a transaction is already in process for the current subscriber",
)
BEING_PROCESSED = ("500.001.1001", "The transaction is being processed")
DUPLICATE_OCID = ("500.002.1001", "Duplicate OriginatorConversationID")


def error(pair: tuple[str, str], request: str | None = None) -> DarajaError:
    return DarajaError(pair[0], pair[1], request)


# ----- field rules -------------------------------------------------------------------------
def digits(value: Any, field: str, min_len: int = 1, max_len: int = 20) -> str:
    """A number or numeric string (Daraja accepts both for codes and MSISDNs)."""
    if isinstance(value, bool):
        raise invalid(field)
    text = str(value) if isinstance(value, int) else value
    if not isinstance(text, str) or not _DIGITS.fullmatch(text):
        raise invalid(field)
    if not min_len <= len(text) <= max_len:
        raise invalid(field)
    return text


def shortcode(value: Any, field: str = "BusinessShortCode") -> str:
    return digits(value, field, 5, 7)


def msisdn(value: Any, field: str) -> str:
    """12 digits, ``2547…`` or ``2541…`` (§2.1 phone rules)."""
    number = digits(value, field, 12, 12)
    if not number.startswith(("2547", "2541")):
        raise invalid(field)
    return number


def whole_amount(value: Any, field: str = "Amount") -> int:
    """A whole, positive amount given as number or numeric string; decimals are invalid."""
    if isinstance(value, bool) or value is None:
        raise invalid(field)
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise invalid(field)
        number = Decimal(str(value))
    elif isinstance(value, str) and _DECIMAL.fullmatch(value) and len(value) <= 20:
        try:
            number = Decimal(value)
        except InvalidOperation as exc:  # pragma: no cover - regex already guards
            raise invalid(field) from exc
    else:
        raise invalid(field)
    if number != number.to_integral_value() or number <= 0:
        raise invalid(field)
    return int(number)


def text(
    value: Any,
    field: str,
    max_len: int,
    *,
    min_len: int = 0,
    required: bool = True,
    numbers_ok: bool = False,
) -> str:
    if value is None and not required:
        return ""
    if numbers_ok and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not min_len <= len(value) <= max_len:
        raise invalid(field)
    return value


def url(value: Any, field: str) -> str:
    """An absolute http(s) URL with a host (HTTP is allowed in the sandbox)."""
    if not isinstance(value, str) or not value or len(value) > 2048 or value != value.strip():
        raise invalid(field)
    if any(ch.isspace() for ch in value):
        raise invalid(field)
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError as exc:
        raise invalid(field) from exc
    if parts.scheme not in {"http", "https"} or not host:
        raise invalid(field)
    return value


# Words Safaricom refuses in C2B URLs, in any case (§2.4); "exe" also covers "exec".
C2B_URL_FORBIDDEN = ("m-pesa", "mpesa", "safaricom", "exe", "cmd", "sql", "query")


def c2b_url(value: Any, field: str) -> str:
    checked = url(value, field)
    lowered = checked.lower()
    if any(word in lowered for word in C2B_URL_FORBIDDEN):
        raise invalid(field)
    return checked


def timestamp(value: Any, field: str = "Timestamp") -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{14}", value):
        raise invalid(field)
    try:
        dt.datetime.strptime(value, "%Y%m%d%H%M%S")
    except ValueError as exc:
        raise invalid(field) from exc
    return value


def stk_password(code: str, passkey: str, stamp: str) -> str:
    return base64.b64encode(f"{code}{passkey}{stamp}".encode()).decode()


# ----- time --------------------------------------------------------------------------------
def kenya(at: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(at, KENYA)


def ts14(at: float) -> str:
    """``YYYYMMDDHHmmss`` in Kenya time — Daraja's usual format."""
    return kenya(at).strftime("%Y%m%d%H%M%S")


def dotted(at: float) -> str:
    """``DD.MM.YYYY HH:mm:ss`` — B2C TransactionCompletedDateTime (§2.5)."""
    return kenya(at).strftime("%d.%m.%Y %H:%M:%S")


def money(amount: Decimal | int) -> str:
    return f"{Decimal(amount):.2f}"


# ----- people ------------------------------------------------------------------------------
_NAMES = (
    ("John", "Doe"),
    ("Jane", "Wanjiku"),
    ("Peter", "Otieno"),
    ("Mary", "Achieng"),
    ("James", "Kamau"),
    ("Grace", "Njeri"),
)


def customer_name(number: str) -> tuple[str, str]:
    """A stable fake registered name for an MSISDN."""
    return _NAMES[int(number) % len(_NAMES)]


def masked(number: str) -> str:
    """C2B MSISDN masking since Nov 2023 (``2547 ***** 126``)."""
    return f"{number[:4]} ***** {number[-3:]}"


# ----- ids ---------------------------------------------------------------------------------
class Ids:
    """Daraja-shaped identifiers.

    Each id is drawn from ``sim.rng_for(kind, sequence + clock)``: with the same seed, the same
    request order and the same clock, a run produces the same ids (and therefore the same fault
    decisions, which core derives from the callback key). With a real clock, ids from two runs
    never collide, so a gateway database survives a simulator restart.
    """

    def __init__(self, sim: Simulator, clock: Callable[[], float]) -> None:
        self.sim = sim
        self.clock = clock
        self._n = 0
        self._issued: set[str] = set()

    def _fresh(self, kind: str, make: Callable[[Any, float], str]) -> str:
        while True:
            self._n += 1
            now = self.clock()
            rng = self.sim.rng_for(kind, f"{self._n}:{now:.3f}")
            value = make(rng, now)
            if value not in self._issued:
                self._issued.add(value)
                return value

    def receipt(self) -> str:
        """10 uppercase alphanumerics; the first three encode the date like real receipts."""

        def make(rng: Any, now: float) -> str:
            day = kenya(now)
            prefix = (
                chr(ord("A") + (day.year - 2006) % 26)
                + chr(ord("A") + day.month - 1)
                + "123456789ABCDEFGHIJKLMNOPQRSTUV"[day.day - 1]
            )
            return prefix + "".join(rng.choice(_ALNUM) for _ in range(7))

        return self._fresh("receipt", make)

    def merchant_request(self) -> str:
        def make(rng: Any, now: float) -> str:
            h = f"{rng.getrandbits(96):024x}"
            return f"{h[:4]}-{h[4:8]}-{h[8:12]}-{h[12:24]}{rng.randrange(10**7):07d}"

        return self._fresh("merchant", make)

    def checkout_request(self, phone: str) -> str:
        """``ws_CO_`` + DDMMYYYYHHmmss + 3 digits + 9-digit local MSISDN (§2.1)."""

        def make(rng: Any, now: float) -> str:
            return f"ws_CO_{kenya(now):%d%m%Y%H%M%S}{self._n % 1000:03d}{phone[-9:]}"

        return self._fresh("checkout", make)

    def conversation(self) -> str:
        """``AG_<yyyymmdd>_<20 hex>`` (§2.5)."""

        def make(rng: Any, now: float) -> str:
            return f"AG_{kenya(now):%Y%m%d}_{rng.getrandbits(80):020x}"

        return self._fresh("conversation", make)

    def originator_conversation(self) -> str:
        """Old-style ``29115-34620561-1`` for requests that do not bring their own."""

        def make(rng: Any, now: float) -> str:
            return f"{rng.randrange(10000, 99999)}-{rng.randrange(10**7, 10**8)}-1"

        return self._fresh("originator", make)


# ----- initiator credentials ---------------------------------------------------------------
@dataclass(frozen=True)
class CertifiedKey:
    key: rsa.RSAPrivateKey
    certificate_pem: str


@functools.cache
def simulator_certificate() -> CertifiedKey:
    """RSA key + self-signed X.509 certificate standing in for Safaricom's public cert.

    Generated once per process (key generation is the slowest thing in a test run); it is
    never a secret: the simulator exists to be decrypted against.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Lipwa simulator M-Pesa (NOT Safaricom)"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lipwa simulator - test use only"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return CertifiedKey(key=key, certificate_pem=pem)


def encrypt_credential(certificate_pem: str, password: str) -> str:
    """What a client does: base64(RSA PKCS#1 v1.5 encrypt(password)) with the certificate."""
    cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    return base64.b64encode(public.encrypt(password.encode(), padding.PKCS1v15())).decode()


def credential_matches(key: rsa.RSAPrivateKey, credential: str, password: str) -> bool:
    try:
        raw = base64.b64decode(credential, validate=True)
        # OpenSSL may answer bad padding with random bytes (implicit rejection) instead of an
        # error; either way the plaintext will not equal the password.
        return key.decrypt(raw, padding.PKCS1v15()) == password.encode()
    except (ValueError, binascii.Error, TypeError):
        return False
