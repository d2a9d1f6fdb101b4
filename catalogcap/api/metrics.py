"""`/metrics` in the Prometheus text exposition format, through prometheus_client.

Store-wide numbers (queue depth, captions, caption latency, training runs) are read from
the database by a custom collector at scrape time, so they count the work of every process
sharing it (`watch` included); request counts and durations are this server's own
(prometheus_client counters and histograms in this server's registry). The caption latency
histogram (job queued -> captions committed) is fed incrementally from finished jobs, so a
scrape reads only the jobs finished since the previous one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from catalogcap.store.database import read_session
from catalogcap.store.models import ASSET_STATES, Job, TrainingRun
from catalogcap.store.queue import runnable_count

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# Every label has a bounded set of values, whatever clients send: an unknown method is
# "other", a path that matches no route is "unmatched", a status outside 100-599 "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0)


class LatencyHistogram:
    """Cumulative bucket counts and sum, fed once per finished job; thread-safe."""

    def __init__(self, buckets: Iterable[float]) -> None:
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            index = next((i for i, bound in enumerate(self.bounds) if value <= bound), len(self.bounds))
            self.counts[index] += 1
            self.sum += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        with self._lock:
            counts, total = list(self.counts), self.sum
        buckets, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), counts):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else str(bound), running))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=total)


class CaptionLatency:
    """Queue-to-captions seconds of every finished job, read once each from the store."""

    def __init__(self) -> None:
        self.histogram = LatencyHistogram(LATENCY_BUCKETS)
        self._mark: tuple[datetime, int] | None = None
        self._lock = threading.Lock()

    def update(self, engine: Engine, batch: int = 5000) -> None:
        with self._lock, read_session(engine) as session:
            while True:
                query = (select(Job.id, Job.created_at, Job.finished_at)
                         .where(Job.state == "done", col(Job.finished_at).is_not(None))
                         .order_by(Job.finished_at, Job.id).limit(batch))
                if self._mark is not None:
                    at, job_id = self._mark
                    query = query.where(sa.or_(Job.finished_at > at, sa.and_(Job.finished_at == at, Job.id > job_id)))
                rows = session.execute(query).all()
                for _job_id, created, finished in rows:
                    self.histogram.observe(max((finished - created).total_seconds(), 0.0))
                if rows:
                    self._mark = (rows[-1][2], rows[-1][0])
                if len(rows) < batch:
                    return


class StoreCollector(Collector):
    """The store-wide families, read from the database at each scrape."""

    def __init__(self, engine: Engine, status: Callable[[], dict[str, Any]], worker_captioned: Callable[[], int],
                 plugin_failures: Callable[[], dict[str, int]], latency: CaptionLatency) -> None:
        self.engine, self.status = engine, status
        self.worker_captioned, self.plugin_failures = worker_captioned, plugin_failures
        self.latency = latency

    def collect(self) -> Iterator[Metric]:
        status = self.status()
        self.latency.update(self.engine)
        with read_session(self.engine) as session:
            runnable = runnable_count(session)
            runs = dict(session.execute(select(TrainingRun.state, sa.func.count()).group_by(TrainingRun.state)).all())
        yield _gauge("catalogcap_queue_jobs", "Captioning jobs by state (the queue depth is state=pending).",
                     "state", sorted(status["jobs"].items()))
        yield GaugeMetricFamily("catalogcap_queue_runnable_jobs",
                                "Jobs a worker may claim now: pending ones whose retry delay has passed,"
                                " running ones whose lease ran out.",
                                value=runnable)
        yield _gauge("catalogcap_assets", "Distinct images by state.", "state",
                     [(s, status["assets_by_state"].get(s, 0)) for s in ASSET_STATES])
        yield _gauge("catalogcap_captions", "Captions by review state.", "state", sorted(status["captions"].items()))
        yield GaugeMetricFamily("catalogcap_captions_per_minute",
                                "Images captioned per minute, averaged over 5 minutes.",
                                value=status["captions_per_minute"])
        yield self.latency.histogram.family("catalogcap_caption_latency_seconds",
                                            "Time from queueing an image to its captions.")
        yield _gauge("catalogcap_training_runs", "Training rounds by state.", "state", sorted(runs.items()))
        yield _gauge("catalogcap_active_adapter_info", "The LoRA adapter in service (none: the base model).",
                     "adapter", [(status["adapter"] or "none", 1)])
        yield CounterMetricFamily("catalogcap_api_worker_captioned", "Images captioned by this server's worker.",
                                  value=self.worker_captioned())
        failures = CounterMetricFamily("catalogcap_plugin_failures", "Plugin hook calls that raised, by plugin.",
                                       labels=["plugin"])
        for name, n in sorted(self.plugin_failures().items()):
            failures.add_metric([name], n)
        yield failures


def _gauge(name: str, documentation: str, label: str, samples: Iterable[tuple[str, float]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value, n in samples:
        family.add_metric([value], n)
    return family


class Metrics:
    """This server's registry: request counters and durations, plus the store's collector."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("catalogcap_api_requests", "HTTP requests served, by route and status.",
                                ["method", "route", "status"], registry=self.registry)
        self.durations = Histogram("catalogcap_api_request_duration_seconds", "Time to answer an HTTP request.",
                                   ["route"], buckets=REQUEST_BUCKETS, registry=self.registry)
        self.latency = CaptionLatency()
        self._store: StoreCollector | None = None

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        code = str(status) if 100 <= status <= 599 else "other"
        self.requests.labels(method, route, code).inc()
        self.durations.labels(route).observe(seconds)

    def watch_store(self, engine: Engine, status: Callable[[], dict[str, Any]], *,
                    worker_captioned: Callable[[], int], plugin_failures: Callable[[], dict[str, int]]) -> None:
        """Add the store-wide families to every scrape (once per server)."""
        if self._store is None:
            self._store = StoreCollector(engine, status, worker_captioned, plugin_failures, self.latency)
            self.registry.register(self._store)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware counting requests by route template (never the raw path: no id explosion)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.record(scope["method"], route, status, time.perf_counter() - started)
