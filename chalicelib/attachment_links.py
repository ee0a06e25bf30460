"""Attachments of two-way chats in the stream: copied from Connect into the relay's bucket, linked from their event.

Connect streams attachments as metadata only. For a chat whose participant connection the relay holds, an
APPROVED attachment is fetched through GetAttachment's signed URL, kept under the relay's attachments prefix, and
its event carries a pre-signed link to the copy (``archive``). REJECTED and IN_PROGRESS attachments are reported as
``rejected`` and ``pending``; a copy that fails is ``failed`` (or ``unavailable`` once the chat has ended) and the
event still goes out: an attachment never holds up the chat's stream. Chats without a held connection keep the
metadata-only event.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import ChatEndedError, ChatError, ChatNotFoundError
from chalicelib.observability import count, logger

if TYPE_CHECKING:
    from chalicelib.adapters.attachment_files import AttachmentFiles
    from chalicelib.adapters.attachment_store import AttachmentStore
    from chalicelib.chat_items import Attachment, ChatItem
    from chalicelib.events import RelayEvent
    from chalicelib.two_way_chats import TwoWayChats

# An instance may raise Connect's attachment limit to 100 MB; nothing larger is read.
MAX_COPY_BYTES: Final = 100 * 1024 * 1024
_STATUS: Final = {"REJECTED": "rejected", "IN_PROGRESS": "pending"}


class AttachmentLinks:
    """Adds ``archive`` (a link to the relay's copy, or why there is none) to the attachments of two-way chats."""

    def __init__(self, chats: TwoWayChats, files: AttachmentFiles, store: AttachmentStore) -> None:
        self._chats = chats
        self._files = files
        self._store = store

    def add_links(self, item: ChatItem, event: RelayEvent) -> RelayEvent:
        """The event with each attachment's ``archive``; unchanged for a chat the relay holds no connection for."""
        described = event.data.get("attachments")
        if not described or not self._chats.holds(item.initial_contact_id):
            return event
        attachments = [
            {**metadata, "archive": self._archive(item, attachment)}
            for metadata, attachment in zip(described, item.attachments, strict=True)
        ]
        return replace(event, data={**event.data, "attachments": attachments})

    def _archive(self, item: ChatItem, attachment: Attachment) -> dict[str, Any]:
        if attachment.status != "APPROVED":
            return {"status": _STATUS.get(attachment.status or "", "pending")}
        try:
            download = self._chats.attachment_download(item.initial_contact_id, attachment.attachment_id)
            body = self._files.download(
                download.url, max_bytes=min(download.size_bytes or MAX_COPY_BYTES, MAX_COPY_BYTES)
            )
            key = self._store.keep(
                initial_contact_id=item.initial_contact_id,
                attachment_id=attachment.attachment_id,
                name=attachment.name or attachment.attachment_id,
                content_type=attachment.content_type or "application/octet-stream",
                body=body,
            )
            url, expires_at = self._store.link(key)
        except (ChatEndedError, ChatNotFoundError) as exc:
            logger.warning(
                "attachment not copied", extra={"attachment_id": attachment.attachment_id, "reason": exc.code}
            )
            count("AttachmentNotCopied", reason=exc.code)
            return {"status": "unavailable"}
        except ChatError as exc:
            logger.warning(
                "attachment not copied", extra={"attachment_id": attachment.attachment_id, "reason": exc.code}
            )
            count("AttachmentNotCopied", reason=exc.code)
            return {"status": "failed"}
        except (ClientError, BotoCoreError) as exc:
            logger.warning(
                "attachment not copied", extra={"attachment_id": attachment.attachment_id, "reason": type(exc).__name__}
            )
            count("AttachmentNotCopied", reason="StorageError")
            return {"status": "failed"}
        count("AttachmentCopied")
        return {"status": "copied", "url": url, "expires_at": expires_at, "size_bytes": len(body), "key": key}
