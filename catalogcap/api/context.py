"""What every request handler shares: the store, the settings, plugins, the worker, metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from sqlalchemy.engine import Engine

from catalogcap.api.metrics import Metrics
from catalogcap.settings import Settings


@dataclass
class ApiContext:
    engine: Engine
    settings: Settings
    metrics: Metrics
    hooks: Any = None  # a catalogcap.services.Announcer: catalogcap.plugins.Hooks, or a test's recorder
    worker: Any = None  # catalogcap.api.background.BackgroundWorker, or None with --no-worker

    def plugin_failures(self) -> dict[str, int]:
        """Failures of each plugin in this process (none when the announcer is not plugins')."""
        pm = getattr(self.hooks, "pm", None)
        return pm.failures() if pm is not None else {}

    def wake_worker(self) -> None:
        if self.worker is not None:
            self.worker.wake()


def get_ctx(request: Request) -> ApiContext:
    return request.app.state.ctx
