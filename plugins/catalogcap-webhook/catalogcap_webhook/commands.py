"""`catalogcap webhook deliver|status|retry|enqueue`: drive and inspect the outbox."""

from __future__ import annotations

import time

import click

from catalogcap.cli.app import App, pass_app
from catalogcap.store.models import CAPTION_STATES


@click.group()
def webhook() -> None:
    """Signed webhook events: deliver the outbox, see its state, re-arm dead events, queue old captions."""


def _setup(app: App):
    from catalogcap_webhook import load_config
    from catalogcap_webhook.outbox import Outbox

    return load_config(app.settings), Outbox.for_settings(app.settings)


@webhook.command()
@click.option("--follow", is_flag=True, help="Keep running: send new events and retries as they fall due.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@pass_app
def deliver(app: App, follow: bool, as_json: bool) -> None:
    """Send what is waiting now (events queued by hooks or `enqueue`), retries included (backoff is
    skipped once); with --follow, keep going. Each URL is sent to on its own, so one slow endpoint
    never holds up another."""
    from catalogcap_webhook.delivery import drain

    config, outbox = _setup(app)
    outcome = drain(outbox, config, due_only=False)
    outbox.prune(config.keep_delivered_days * 86400)
    result = {"delivered": outcome.delivered, "failed": outcome.failed, "dead": outcome.dead}
    if as_json:
        app.json(result)
    else:
        app.console.print(", ".join(f"{k}: {v}" for k, v in result.items()))
    while follow:
        next_due = outbox.next_due()
        time.sleep(1.0 if next_due is None else min(max(next_due - time.time(), 0.2), 5.0))
        outcome = drain(outbox, config)
        if outcome.attempts and not as_json:
            app.console.print(f"delivered: {outcome.delivered}, failed: {outcome.failed},"
                              f" dead: {outcome.dead}")


@webhook.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_app
def status(app: App, as_json: bool) -> None:
    """Per endpoint: events pending, delivered and dead, the oldest waiting one and the last error."""
    config, outbox = _setup(app)
    summary = outbox.summary()
    if as_json:
        app.json({"urls": config.urls, "events": config.events, "outbox": outbox.where,
                  "deliveries": summary})
        return
    if not summary:
        urls = ", ".join(config.urls) or "none"
        app.console.print(f"outbox in {outbox.where} is empty; configured urls: {urls}", markup=False)
    for url, row in summary.items():
        app.console.print(f"{url}: " + ", ".join(f"{k}={v}" for k, v in row.items()), markup=False)


@webhook.command()
@pass_app
def retry(app: App) -> None:
    """Re-arm events that were given up (dead); they are sent by the next delivery."""
    _config, outbox = _setup(app)
    app.console.print(f"re-armed {outbox.retry_dead()} dead deliveries")


@webhook.command()
@click.option("--state", default="accepted,edited", show_default=True,
              help="Caption states, comma-separated.")
@pass_app
def enqueue(app: App, state: str) -> None:
    """Queue events for captions already reviewed (e.g. for a newly added URL); sends nothing itself.

    The events wait in the outbox for `catalogcap webhook deliver` (or a running
    `deliver --follow`); events delivered before are not queued again."""
    from catalogcap.plugins.events import select_caption_events
    from catalogcap.store.database import read_session
    from catalogcap_webhook import caption_event_body, queue

    states = [s.strip() for s in state.split(",") if s.strip()]
    if not states or any(s not in CAPTION_STATES for s in states):
        raise click.BadParameter(f"{state!r}: use {', '.join(CAPTION_STATES)}", param_hint="--state")
    config, _outbox = _setup(app)
    with read_session(app.engine) as session:
        events = select_caption_events(session, states=states)
    added = 0
    for caption in events:
        event_type = f"caption.{caption.state}"
        added += queue(app.settings, event_type, *caption_event_body(caption, event_type), config=config,
                       wake=False)
    app.console.print(f"queued {added} new deliveries for {len(events)} captions;"
                      " `catalogcap webhook deliver` sends them")
