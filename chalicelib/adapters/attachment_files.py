"""Attachment bytes over Connect's pre-signed S3 URLs: the PUT of an upload and the GET of a download.

The URLs come from the Participant Service's answers, never from a caller. Redirects are not followed, every
transfer has a deadline, and a download is read no further than the size Connect announced.
"""

from __future__ import annotations

from typing import Final

import urllib3

from chalicelib.errors import ChatUnavailableError

CONNECT_SECONDS: Final = 3.0
TRANSFER_SECONDS: Final = 20.0
_CHUNK: Final = 64 * 1024


class AttachmentTransferError(ChatUnavailableError):
    """Connect's storage refused or failed a transfer."""


class AttachmentFiles:
    """Moves attachment bytes to and from pre-signed URLs on one pool, kept for the container's life."""

    def __init__(self) -> None:
        self._pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=CONNECT_SECONDS, read=TRANSFER_SECONDS), retries=False
        )

    def upload(self, url: str, headers: dict[str, str], body: bytes) -> None:
        """PUT the bytes with the headers Connect signed."""
        try:
            response = self._pool.request("PUT", url, body=body, headers=headers, redirect=False)
        except urllib3.exceptions.HTTPError:
            raise AttachmentTransferError("the attachment could not be uploaded to Connect") from None
        if not 200 <= response.status < 300:
            raise AttachmentTransferError(
                "the attachment could not be uploaded to Connect", connect_code=f"HTTP{response.status}"
            )

    def download(self, url: str, max_bytes: int) -> bytes:
        """GET the bytes, refusing more than ``max_bytes``."""
        try:
            response = self._pool.request("GET", url, preload_content=False, redirect=False)
        except urllib3.exceptions.HTTPError:
            raise AttachmentTransferError("the attachment could not be read from Connect") from None
        try:
            if response.status != 200:
                raise AttachmentTransferError(
                    "the attachment could not be read from Connect", connect_code=f"HTTP{response.status}"
                )
            received = bytearray()
            for chunk in response.stream(_CHUNK):
                received.extend(chunk)
                if len(received) > max_bytes:
                    raise AttachmentTransferError(
                        "the attachment is larger than Connect announced", connect_code="SizeMismatch"
                    )
            return bytes(received)
        except urllib3.exceptions.HTTPError:
            raise AttachmentTransferError("the attachment could not be read from Connect") from None
        finally:
            response.release_conn()
