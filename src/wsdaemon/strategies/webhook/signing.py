"""
Standard Webhooks signatures (https://www.standardwebhooks.com/): HMAC-SHA256
over C{<webhook-id>.<webhook-timestamp>.<body>}, each key's signature as
C{v1,<base64>} in C{webhook-signature}, separated by spaces. Every key of the
route's secret file signs, so a backend verifying with either the old or the
new key accepts the request while secrets rotate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

__all__ = ["signature_headers"]


def signature_headers(keys: Iterable[bytes], message_id: str, timestamp: int,
                      body: bytes) -> dict[str, str]:
    """
    @return: the C{webhook-id}, C{webhook-timestamp} and C{webhook-signature}
        headers of one request.
    """
    signed = f"{message_id}.{timestamp}.".encode() + body
    signatures = " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")
        for key in keys)
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signatures}
