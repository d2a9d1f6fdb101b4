"""catalogcap-webhook: signed JSON events to your endpoints when captions are accepted or edited
and when an adapter is promoted, through a persistent outbox with retries.

    export CATALOGCAP_WEBHOOK_SECRET=...            # never in the config file
    [plugin_config.webhook]
    urls = ["https://shop.example.com/hooks/catalogcap"]
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from catalogcap.plugins import hookimpl
from catalogcap_webhook.delivery import courier_for, verify_signature
from catalogcap_webhook.outbox import Outbox

__version__ = "0.1.0"
__all__ = ["WebhookSettings", "verify_signature"]
log = logging.getLogger("catalogcap.webhook")
EventType = Literal["caption.created", "caption.accepted", "caption.edited", "caption.rejected",
                    "adapter.promoted"]
LOOPBACK_NAMES = {"localhost"}


class WebhookSettings(BaseModel):
    """`[plugin_config.webhook]`; the signing secret comes from the environment only."""

    model_config = ConfigDict(extra="forbid")

    urls: list[str] = Field(default_factory=list, description="Endpoints that get each event (POST, JSON).")
    events: list[EventType] = Field(
        default_factory=lambda: ["caption.accepted", "caption.edited", "adapter.promoted"],
        description="Event types sent: caption.created, caption.accepted, caption.edited, caption.rejected,"
        " adapter.promoted.")
    secret_env: str = Field(
        "CATALOGCAP_WEBHOOK_SECRET", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable with the HMAC-SHA256 signing secret; without it nothing is sent.")
    timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="The most one POST may take, from connecting to the last byte of the answer.")
    backoff_seconds: float = Field(
        5.0, gt=0, le=3600, description="Wait after the first failure; doubles with each further one.")
    backoff_max_seconds: float = Field(300.0, gt=0, le=86400, description="Longest wait between two tries.")
    give_up_after_hours: float = Field(
        72.0, gt=0, description="An event still failing this long after it happened is marked dead (kept;"
        " `catalogcap webhook retry` re-arms it).")
    keep_delivered_days: float = Field(
        30.0, ge=0, description="Delivered events are remembered this long (queued again, not resent).")
    deliver_in_background: bool = Field(
        True, description="Send from a background thread of the process that saw the event (else only"
        " `catalogcap webhook deliver` sends).")
    flush_seconds: float = Field(
        5.0, ge=0, le=300, description="How long a short command waits at exit for its events to go out.")
    allow_http: bool = Field(False, description="Allow plain http:// to hosts other than this machine.")

    @model_validator(mode="before")
    @classmethod
    def _no_secret_in_config(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(key == "secret" or key.endswith("_secret") for key in data):
            raise ValueError("webhook secrets are never read from the config file; put the secret in the"
                             " environment variable named by secret_env (default CATALOGCAP_WEBHOOK_SECRET)")
        return data

    @field_validator("urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url!r} is not an http(s) URL")
            if parts.username or parts.password:
                raise ValueError(f"{url!r} carries credentials; the HMAC signature authenticates us instead")
        return urls

    @model_validator(mode="after")
    def _plain_http(self) -> WebhookSettings:
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme == "http" and not self.allow_http and not _loopback(parts.hostname or ""):
                raise ValueError(f"{url!r} is plain http to another machine; use https (or allow_http)")
        return self


def _loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_config(settings: Any) -> WebhookSettings:
    from catalogcap.plugins.config import validate_section

    raw = (getattr(settings, "plugin_config", None) or {}).get("webhook", {})
    return validate_section(WebhookSettings, "webhook", raw)  # type: ignore[return-value]


def event_key(*parts: object) -> str:
    """The idempotency key: the same event always gets the same key, so it is queued and received once."""
    return hashlib.sha256("|".join(str(p) for p in ("catalogcap", *parts)).encode("utf-8")).hexdigest()[:32]


def payload(key: str, event_type: str, occurred_at: datetime | None, data: dict[str, Any]) -> bytes:
    document = {
        "id": key,
        "idempotency_key": key,
        "type": event_type,
        "occurred_at": (occurred_at or datetime.now(timezone.utc)).isoformat(),
        "data": data,
    }
    return json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def queue(settings: Any, event_type: str, key: str, body: bytes,
          config: WebhookSettings | None = None, *, wake: bool = True) -> int:
    """Put an event in the outbox (once per URL) and, with `wake`, wake this process's courier;
    returns the new rows. Without `wake` the rows wait for `catalogcap webhook deliver`."""
    config = config or load_config(settings)
    if event_type not in config.events or not config.urls:
        return 0
    outbox = Outbox.for_settings(settings)
    added = outbox.enqueue(key, event_type, body, config.urls)
    if added and wake and config.deliver_in_background:
        courier_for(outbox, config).wake()
    return added


def caption_event_body(caption: Any, event_type: str) -> tuple[str, bytes]:
    key = event_key(event_type, caption.fingerprint, caption.kind, caption.id, caption.version)
    return key, payload(key, event_type, caption.reviewed_at, caption.to_json())


@hookimpl
def register_settings(register):
    register("webhook", WebhookSettings)


@hookimpl
def register_commands(cli):
    from catalogcap_webhook.commands import webhook

    cli.add_command(webhook)


@hookimpl
def caption_created(caption, settings):
    queue(settings, "caption.created", *caption_event_body(caption, "caption.created"))


@hookimpl
def caption_reviewed(caption, settings):
    if caption.state in ("accepted", "edited", "rejected"):
        event_type = f"caption.{caption.state}"
        queue(settings, event_type, *caption_event_body(caption, event_type))


@hookimpl
def adapter_promoted(adapter, settings):
    key = event_key("adapter.promoted", adapter.id, adapter.promoted_at)
    body = payload(key, "adapter.promoted", adapter.promoted_at, adapter.to_json())
    queue(settings, "adapter.promoted", key, body)

