"""Parse the callback MoMo sends to X-Callback-Url (momo.md §4.3).

The body has the shape of the status GET result and carries no X-Reference-Id: the caller
knows the reference from the callback URL it gave. The callback is unauthenticated; the
report is a hint to be confirmed with ``MomoClient.get_request_to_pay``.
"""

from __future__ import annotations

from lipwa.providers.base import ProviderReport
from lipwa.providers.momo.wire import status_report


def parse_momo_callback(body: object) -> ProviderReport | None:
    """The report in a callback body (``provider_ref`` None), or None if it has no status.

    Decision: SUCCESSFUL without a ``financialTransactionId`` is reported PENDING so that a
    bare or forged callback cannot mark a payment paid; the status GET settles it.
    """
    return status_report(body, reference_id=None, require_receipt=True)
