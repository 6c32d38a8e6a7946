"""Daraja's initiator-secured APIs on the wire: B2C v3, Transaction Status, Reversal.

Pure functions, no I/O. Facts: ../shared/providers/daraja.md §2.5, §2.6, §2.8.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from lipwa.providers.mpesa.wire import DarajaError, digits

B2C_PATH: Final = "/mpesa/b2c/v3/paymentrequest"
TRANSACTION_STATUS_PATH: Final = "/mpesa/transactionstatus/v1/query"
REVERSAL_PATH: Final = "/mpesa/reversal/v1/request"

B2C_COMMANDS: Final = frozenset({"BusinessPayment", "SalaryPayment", "PromotionPayment"})
REMARKS_MIN, TEXT_MAX = 2, 100
# Reversal: the receiver is an organisation shortcode (the current page says "11").
REVERSAL_RECEIVER_TYPE: Final = "11"
# Transaction status: who asks (4 = organisation shortcode).
SHORTCODE_IDENTIFIER: Final = "4"
DUPLICATE_CODE = "500.002.1001"  # "Duplicate OriginatorConversationID"


class MissingInitiator(ValueError):
    """The account has no initiator name, password or certificate: nothing can be signed."""


@dataclass(frozen=True)
class Initiator:
    """Who signs a secured request, and the shortcode it acts for."""

    name: str
    security_credential: str
    shortcode: str


def security_credential(certificate_pem: str, password: str) -> str:
    """``base64(RSA PKCS#1 v1.5 encrypt(password))`` with the public key of ``certificate_pem``.

    Not OAEP: Daraja decrypts with PKCS#1 v1.5 (§2.5). The padding is random, so each call
    yields a different (equally valid) credential.
    """
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
    except ValueError as exc:
        raise MissingInitiator("certificate_pem is not a PEM X.509 certificate") from exc
    public = certificate.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise MissingInitiator("the certificate does not hold an RSA public key")
    encrypted = public.encrypt(password.encode(), padding.PKCS1v15())
    return base64.b64encode(encrypted).decode("ascii")


def remarks(text: str, fallback: str) -> str:
    """Daraja's Remarks: 2..100 characters, one line."""
    cleaned = " ".join(text.split())[:TEXT_MAX]
    return cleaned if len(cleaned) >= REMARKS_MIN else fallback


def b2c_body(
    initiator: Initiator,
    *,
    originator_conversation_id: str,
    amount: int,
    phone: str,
    remarks_text: str,
    occasion: str,
    result_url: str,
    queue_timeout_url: str,
    command_id: str,
) -> dict[str, Any]:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError("amount must be a whole number of KES (int)")
    if command_id not in B2C_COMMANDS:
        raise ValueError(f"command_id must be one of {sorted(B2C_COMMANDS)}")
    body: dict[str, Any] = {
        "OriginatorConversationID": originator_conversation_id,
        "InitiatorName": initiator.name,
        "SecurityCredential": initiator.security_credential,
        "CommandID": command_id,
        "Amount": str(amount),
        "PartyA": initiator.shortcode,
        "PartyB": digits(phone),
        "Remarks": remarks(remarks_text, "Payout"),
        "QueueTimeOutURL": queue_timeout_url,
        "ResultURL": result_url,
    }
    occasion = " ".join(occasion.split())[:TEXT_MAX]
    if occasion:
        body["Occassion"] = occasion  # Daraja's own spelling in its sample
    return body


def transaction_status_body(
    initiator: Initiator,
    *,
    transaction_id: str | None,
    original_conversation_id: str | None,
    result_url: str,
    queue_timeout_url: str,
    remarks_text: str,
) -> dict[str, Any]:
    if not transaction_id and not original_conversation_id:
        raise ValueError("give transaction_id or original_conversation_id")
    body: dict[str, Any] = {
        "Initiator": initiator.name,
        "SecurityCredential": initiator.security_credential,
        "CommandID": "TransactionStatusQuery",
        "PartyA": initiator.shortcode,
        "IdentifierType": SHORTCODE_IDENTIFIER,
        "ResultURL": result_url,
        "QueueTimeOutURL": queue_timeout_url,
        "Remarks": remarks(remarks_text, "Status"),
        "Occasion": "Status",
    }
    if transaction_id:
        body["TransactionID"] = transaction_id
    if original_conversation_id:
        body["OriginalConversationID"] = original_conversation_id
    return body


def reversal_body(
    initiator: Initiator,
    *,
    transaction_id: str,
    amount: int,
    receiver_party: str,
    result_url: str,
    queue_timeout_url: str,
    remarks_text: str,
) -> dict[str, Any]:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError("amount must be a whole number of KES (int)")
    return {
        "Initiator": initiator.name,
        "SecurityCredential": initiator.security_credential,
        "CommandID": "TransactionReversal",
        "TransactionID": transaction_id,
        "Amount": str(amount),
        "ReceiverParty": receiver_party,
        # Daraja's misspelling is the key it reads.
        "RecieverIdentifierType": REVERSAL_RECEIVER_TYPE,
        "ResultURL": result_url,
        "QueueTimeOutURL": queue_timeout_url,
        "Remarks": remarks(remarks_text, "Refund"),
    }


def is_duplicate_originator(error: DarajaError | None) -> bool:
    """``500.002.1001 Duplicate OriginatorConversationID``: the first request exists. (The
    message reaches us scrubbed: the 24-letter key name looks like a token to the scrubber.)"""
    return (
        error is not None and error.code == DUPLICATE_CODE and "duplicate" in error.message.lower()
    )
