"""`/metrics` in the Prometheus text exposition format (0.0.4), written by hand.

Store-wide numbers (queue depth, captions, caption latency, training runs) are read from
the database, so they count the work of every process sharing it (`watch` included);
request counts and durations are this server's own. The caption latency histogram
(job queued -> captions committed) is fed incrementally from finished jobs, so a scrape
reads only the jobs finished since the previous one.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from catalogcap.store.database import read_session
from catalogcap.store.models import ASSET_STATES, Job, TrainingRun
from catalogcap.store.queue import runnable_count

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Every label has a bounded set of values, whatever clients send: an unknown method is
# "other", a path that matches no route is "unmatched", a status outside 100-599 "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(str(value))}"' for key, value in labels.items()) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Histogram:
    """Cumulative buckets, sum and count; thread-safe."""

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

    def lines(self, name: str, labels: dict[str, str] | None = None) -> list[str]:
        labels = labels or {}
        with self._lock:
            counts, total_sum = list(self.counts), self.sum
        out, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), counts):
            running += count
            le = "+Inf" if bound == float("inf") else _number(bound)
            out.append(f"{name}_bucket{_labels({**labels, 'le': le})} {running}")
        out.append(f"{name}_sum{_labels(labels)} {_number(total_sum)}")
        out.append(f"{name}_count{_labels(labels)} {running}")
        return out


class CaptionLatency:
    """Queue-to-captions seconds of every finished job, read once each from the store."""

    def __init__(self) -> None:
        self.histogram = Histogram(LATENCY_BUCKETS)
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


class Metrics:
    """This server's request counters plus the store-wide gauges, rendered on demand."""

    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.durations: dict[str, Histogram] = {}
        self.latency = CaptionLatency()
        self._lock = threading.Lock()

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        code = str(status) if 100 <= status <= 599 else "other"
        with self._lock:
            self.requests[(method, route, code)] += 1
            histogram = self.durations.setdefault(route, Histogram(REQUEST_BUCKETS))
        histogram.observe(seconds)

    def render(self, engine: Engine, status: dict, *, worker_captioned: int, plugin_failures: dict[str, int]) -> str:
        self.latency.update(engine)
        with read_session(engine) as session:
            runnable = runnable_count(session)
            runs = dict(session.execute(select(TrainingRun.state, sa.func.count()).group_by(TrainingRun.state)).all())
        out: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{name}{_labels(labels)} {_number(value)}" for labels, value in samples)

        family("catalogcap_queue_jobs", "gauge", "Captioning jobs by state (the queue depth is state=pending).",
               [({"state": s}, n) for s, n in sorted(status["jobs"].items())])
        family("catalogcap_queue_runnable_jobs", "gauge", "Pending jobs whose retry delay has passed.",
               [({}, runnable)])
        family("catalogcap_assets", "gauge", "Distinct images by state.",
               [({"state": s}, status["assets_by_state"].get(s, 0)) for s in ASSET_STATES])
        family("catalogcap_captions", "gauge", "Captions by review state.",
               [({"state": s}, n) for s, n in sorted(status["captions"].items())])
        family("catalogcap_captions_per_minute", "gauge", "Images captioned per minute, averaged over 5 minutes.",
               [({}, status["captions_per_minute"])])
        out.append("# HELP catalogcap_caption_latency_seconds Time from queueing an image to its captions.")
        out.append("# TYPE catalogcap_caption_latency_seconds histogram")
        out.extend(self.latency.histogram.lines("catalogcap_caption_latency_seconds"))
        family("catalogcap_training_runs", "gauge", "Training rounds by state.",
               [({"state": s}, n) for s, n in sorted(runs.items())])
        family("catalogcap_active_adapter_info", "gauge", "The LoRA adapter in service (none: the base model).",
               [({"adapter": status["adapter"] or "none"}, 1)])
        family("catalogcap_api_worker_captioned_total", "counter", "Images captioned by this server's worker.",
               [({}, worker_captioned)])
        family("catalogcap_plugin_failures_total", "counter", "Plugin hook calls that raised, by plugin.",
               [({"plugin": name}, n) for name, n in sorted(plugin_failures.items())])
        with self._lock:
            requests = sorted(self.requests.items())
            durations = sorted(self.durations.items())
        family("catalogcap_api_requests_total", "counter", "HTTP requests served, by route and status.",
               [({"method": m, "route": r, "status": s}, n) for (m, r, s), n in requests])
        out.append("# HELP catalogcap_api_request_duration_seconds Time to answer an HTTP request.")
        out.append("# TYPE catalogcap_api_request_duration_seconds histogram")
        for route, histogram in durations:
            out.extend(histogram.lines("catalogcap_api_request_duration_seconds", {"route": route}))
        return "\n".join(out) + "\n"


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
