"""Sending outbox rows: signed POSTs with an overall deadline, retries with exponential backoff.

Every URL is delivered in its own lane (one asyncio task per URL): its events in order,
one at a time, each POST over within `timeout_seconds` however slowly the receiver
answers, and the other URLs' lanes never wait for it.

The courier is a background thread per outbox: hooks only write a row and wake it, so the
daemon's worker and the review UI never wait on the network. A short command waits at most
`flush_seconds` at exit for its events to go out; whatever is left stays in the outbox for
the next courier or `catalogcap webhook deliver`.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import hmac
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from catalogcap_webhook.outbox import Delivery, Outbox

log = logging.getLogger("catalogcap.webhook")
SIGNATURE_HEADER = "X-Catalogcap-Signature"
PERMANENT = {400, 410, 413, 415, 422}  # the receiver will never take this body: stop retrying it
LEASE_MARGIN_S = 30.0


def sign(secret: str, body: bytes) -> str:
    """The signature header value: "sha256=" + hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """For receivers: does `header` sign `body` with `secret`? (constant-time comparison)."""
    return bool(header) and hmac.compare_digest(sign(secret, body), header or "")


@dataclass
class Outcome:
    delivered: int = 0
    failed: int = 0
    dead: int = 0

    @property
    def attempts(self) -> int:
        return self.delivered + self.failed + self.dead


def backoff(config: Any, attempts: int) -> float:
    """Seconds before the next try after `attempts` failures: doubling, capped, with ±20% jitter."""
    delay = min(config.backoff_max_seconds, config.backoff_seconds * 2 ** max(attempts - 1, 0))
    return delay * random.uniform(0.8, 1.2)


async def send(client: httpx.AsyncClient, delivery: Delivery, secret: str) -> int:
    response = await client.post(delivery.url, content=delivery.body, headers={
        "Content-Type": "application/json",
        "User-Agent": "catalogcap-webhook/0.1",
        SIGNATURE_HEADER: sign(secret, delivery.body),
        "X-Catalogcap-Event": delivery.event_type,
        "Idempotency-Key": delivery.event_key,
        "X-Catalogcap-Attempt": str(delivery.attempts + 1),
    })
    return response.status_code


async def attempt(outbox: Outbox, config: Any, client: httpx.AsyncClient, row: Delivery, secret: str) -> str:
    """One POST of one row, over within `timeout_seconds` from start to the last byte of the answer
    (a receiver trickling its answer a byte a second is cut off like a silent one), recorded in the
    outbox; returns "delivered", "failed" (will retry) or "dead"."""
    status: int | None = None
    try:
        if not secret:
            raise RuntimeError(f"environment variable {config.secret_env} is not set; unsigned events are never sent")
        status = await asyncio.wait_for(send(client, row, secret), config.timeout_seconds)
        if 200 <= status < 300:
            outbox.delivered(row.id, status)
            return "delivered"
        error = f"HTTP {status}"
    except asyncio.TimeoutError:
        error = f"no complete answer within timeout_seconds ({config.timeout_seconds:g} s)"
    except (httpx.HTTPError, RuntimeError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    too_old = time.time() - row.created_at > config.give_up_after_hours * 3600
    if status in PERMANENT or too_old:
        outbox.failed(row.id, error, status, retry_at=None)
        log.error("webhook %s: event %s given up after %d attempts: %s", row.url, row.event_key,
                  row.attempts + 1, error)
        return "dead"
    retry_at = time.time() + backoff(config, row.attempts + 1)
    outbox.failed(row.id, error, status, retry_at=retry_at)
    log.warning("webhook %s: event %s attempt %d failed (%s); will retry", row.url, row.event_key,
                row.attempts + 1, error)
    return "failed"


def drain(outbox: Outbox, config: Any, *, due_only: bool = True, deadline: float | None = None) -> Outcome:
    """Deliver until every URL is caught up or has failed once in this drain.

    Each URL is its own lane: its events go out in order, one at a time, while the other URLs'
    lanes go on beside it, so a slow or stalled receiver never holds up another one. `deadline`
    (monotonic) stops new attempts; those under way end within their own timeout."""
    loop = asyncio.new_event_loop()
    # The exit flush of a short command runs after Python stopped taking new work in thread
    # pools: name lookups (the loop's only use of its executor here) run inline instead.
    loop.set_default_executor(_InlineExecutor())
    try:
        return loop.run_until_complete(_drain(outbox, config, due_only=due_only, deadline=deadline))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


class _InlineExecutor(ThreadPoolExecutor):
    """Runs each call at once in the calling thread (asyncio insists on a ThreadPoolExecutor)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


async def _drain(outbox: Outbox, config: Any, *, due_only: bool, deadline: float | None) -> Outcome:
    # The outbox's short transactions run on the loop itself, not in a thread pool: the
    # exit flush runs after Python has stopped accepting new threads.
    total = Outcome()
    secret = os.environ.get(config.secret_env, "")
    lease = config.timeout_seconds + LEASE_MARGIN_S  # longer than any attempt can take
    lanes: dict[str, asyncio.Task[str]] = {}
    failed_urls: set[str] = set()
    async with httpx.AsyncClient(timeout=config.timeout_seconds, follow_redirects=False) as client:
        while True:
            if deadline is None or time.monotonic() < deadline:
                rows = outbox.claim(lease, due_only=due_only, skip_urls=frozenset(failed_urls | lanes.keys()))
                for row in rows:
                    lanes[row.url] = asyncio.create_task(attempt(outbox, config, client, row, secret))
            if not lanes:
                return total
            finished, _ = await asyncio.wait(lanes.values(), return_when=asyncio.FIRST_COMPLETED)
            for url, task in list(lanes.items()):
                if task not in finished:
                    continue
                del lanes[url]
                result = task.result()
                setattr(total, result, getattr(total, result) + 1)
                if result == "failed":  # later events of this URL wait behind this one, in order
                    failed_urls.add(url)


class Courier:
    """A daemon thread that drains one outbox: woken by new events, else asleep until the next retry."""

    def __init__(self, outbox: Outbox, config: Any) -> None:
        self.outbox, self.config = outbox, config
        self._wake, self._idle, self._stop = threading.Event(), threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="catalogcap-webhook", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._idle.clear()
        self._wake.set()

    def flush(self, timeout: float) -> bool:
        """Wait until nothing is due now (or `timeout`); True when it got there."""
        deadline = time.monotonic() + timeout
        while True:
            self.wake()
            if not self._idle.wait(max(deadline - time.monotonic(), 0)):
                return False
            next_due = self.outbox.next_due()
            if next_due is None or next_due > time.time():
                return True

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                drain(self.outbox, self.config)
                next_due = self.outbox.next_due()
            except Exception:
                log.exception("webhook courier for %s failed; retrying in a minute", self.outbox.where)
                next_due = time.time() + 60
            self._idle.set()
            wait = 60.0 if next_due is None else min(max(next_due - time.time(), 0.05), 60.0)
            self._wake.wait(wait)


_couriers: dict[str, Courier] = {}
_lock = threading.Lock()


def courier_for(outbox: Outbox, config: Any) -> Courier:
    """The process's courier of this outbox (started on first use, flushed at exit)."""
    with _lock:
        courier = _couriers.get(outbox.where)
        if courier is None:
            courier = _couriers[outbox.where] = Courier(outbox, config)
        courier.config = config
        return courier


def stop_couriers() -> None:
    with _lock:
        couriers = list(_couriers.values())
        _couriers.clear()
    for courier in couriers:
        courier.stop()


@atexit.register
def _flush_at_exit() -> None:
    for courier in list(_couriers.values()):
        if not courier.flush(courier.config.flush_seconds):
            log.warning("webhook events still undelivered in %s; `catalogcap webhook deliver` sends them",
                        courier.outbox.where)
