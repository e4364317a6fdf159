"""One job through Ollama's streaming `POST /api/generate` (reference/ollama.md §1, §2, §4).

Three budgets bound a job: the first chunk (a cold model load; giving up early aborts Ollama's
load, so it is long), the gap between chunks (a stalled runner), and the job's deadline. Every
outcome becomes a `Done` or a `Failed` with a PROTOCOL.md code; nothing is raised to the caller.
"""
import logging
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from ipc import httpclient
from ipc.messages import MAX_WORK_MESSAGE, Done, Failed, Job, Metrics, Timing
from workers.ollama import (CONNECT_TIMEOUT, OllamaError, error_text, find_model, iter_ndjson,
                            list_models)

log = logging.getLogger(__name__)

# The answer must fit in one work message, with room for the envelope.
MAX_TEXT_BYTES = MAX_WORK_MESSAGE - 64 * 1024
DEADLINE = "the job's deadline passed before Ollama finished"
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Timeouts:
    """Seconds; defaults per reference/ollama.md §4 (connect ≤ 5, first byte ~ load timeout)."""
    connect: float = CONNECT_TIMEOUT
    first_chunk: float = 300.0
    idle: float = 60.0


class JobFailure(Exception):
    """Ends a job with a PROTOCOL.md failure `code`; the message is one line for an operator."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def request_body(job: Job) -> dict[str, Any]:
    """The generate request: options pass through unchanged, except `cpu_only` adds num_gpu 0."""
    body: dict[str, Any] = {"model": job.model, "prompt": job.prompt,
                            "options": {**job.options, "num_gpu": 0} if job.cpu_only
                            else job.options,
                            "stream": True}
    if job.system is not None:
        body["system"] = job.system
    return body


def http_failure(status: int, detail: str) -> JobFailure:
    """Map an HTTP error answered before streaming (reference/ollama.md §2) to a failure code."""
    if status == 404 or "not found" in detail.lower():
        code = "model_not_found"
    elif status in (429, 503):
        code = "overloaded"
    else:
        code = "inference_failed"
    return JobFailure(code, f"Ollama answered {status}: {detail}")


def budget(end: float, why: str, deadline: float) -> tuple[float, str]:
    """The sooner of a phase's end and the job's deadline, with what to say if it runs out."""
    return (end, why) if end < deadline else (deadline, DEADLINE)


def _count(final: dict[str, Any], key: str) -> int:
    """A metric of the final chunk; absent means zero (Ollama omits zero metrics)."""
    value = final.get(key, 0)
    return int(value) if isinstance(value, (int, float)) else 0


def metrics(final: dict[str, Any], digest: str) -> Metrics:
    """Metrics from the final chunk, nanosecond durations turned into whole milliseconds."""
    return Metrics(eval_count=_count(final, "eval_count"),
                   prompt_eval_count=_count(final, "prompt_eval_count"),
                   total_duration_ms=_count(final, "total_duration") // 1_000_000,
                   load_duration_ms=_count(final, "load_duration") // 1_000_000,
                   done_reason=str(final.get("done_reason", "")),
                   model_digest=digest)


class Generator:
    """Runs jobs against one Ollama endpoint, one at a time (not thread-safe)."""

    def __init__(self, endpoint: str, timeouts: Timeouts = Timeouts()) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeouts = timeouts
        # its own keep-alive connection, the JSON content type sent with every call
        self._http = httpclient.Client(connect_timeout=timeouts.connect, headers=JSON)
        self._digests: dict[str, str] = {}
        self._sent = self._last = 0.0   # the running job's request to Ollama, its last line

    def run(self, job: Job) -> Done | Failed:
        """Serve `job`; every failure is returned as `Failed`, never raised."""
        taken = time.monotonic()
        try:
            text, final = self._generate(job)
        except JobFailure as e:
            return Failed(job=job.job, request_id=job.request_id, code=e.code, message=str(e))
        found = metrics(final, self.digest(job.model))
        return Done(job=job.job, request_id=job.request_id, text=text, metrics=found,
                    timing=Timing(to_ollama=self._sent - taken, ollama=self._last - self._sent,
                                  reply=time.monotonic() - self._last))

    def digest(self, model: str) -> str:
        """The digest /api/tags lists for `model`, cached per name and refreshed on a miss;
        "" when Ollama cannot say (the answer is still good)."""
        if model not in self._digests:
            try:
                entry = find_model(list_models(self.endpoint, self._http), model)
            except OllamaError as e:
                log.warning("no digest for %s: %s", model, e)
                return ""
            if entry is None or not isinstance(entry.get("digest"), str):
                return ""
            self._digests[model] = entry["digest"]
        return self._digests[model]

    def _generate(self, job: Job) -> tuple[str, dict[str, Any]]:
        start = time.monotonic()
        deadline = start + job.deadline_ms / 1000 - time.time()
        if deadline <= start:
            raise JobFailure("timeout", "the job's deadline had passed before it started")
        first = budget(start + self.timeouts.first_chunk,
                       f"Ollama sent nothing within {self.timeouts.first_chunk:g} s "
                       "(model load too slow?)", deadline)
        self._sent = time.monotonic()
        try:
            stream = self._http.open("POST", self.endpoint + "/api/generate",
                                     body=msgspec.json.encode(request_body(job)),
                                     deadline=first[0], why=first[1])
        except httpclient.Unreachable:
            raise (JobFailure("timeout", DEADLINE) if time.monotonic() >= deadline
                   else self._unreachable()) from None
        except httpclient.Timeout as e:
            raise JobFailure("timeout", str(e)) from None
        except httpclient.HttpError as e:
            raise JobFailure("inference_failed", f"request to Ollama failed: {e}") from None
        with stream:
            try:
                if stream.status != 200:
                    raise http_failure(stream.status, error_text(stream.read(64 * 1024)))
                return self._read(stream, deadline)
            except (httpclient.HttpError, OllamaError, JobFailure) as e:
                if stream.guard.expired:
                    raise JobFailure("timeout", stream.guard.expired) from None
                if isinstance(e, JobFailure):
                    raise
                detail = (str(e) if isinstance(e, OllamaError)
                          else f"the stream broke ({e})")
                raise JobFailure("inference_failed",
                                 f"Ollama failed mid-answer: {detail}") from None

    def _read(self, stream: httpclient.Stream, deadline: float) -> tuple[str, dict[str, Any]]:
        """Collect the `response` pieces up to the done chunk; `thinking` is not the answer.
        Each chunk moves the stream's budget to the idle limit (or the deadline, if sooner)."""
        parts: list[str] = []
        size = 0
        gap = self.timeouts.idle
        idle = f"Ollama stalled: no output for {gap:g} s mid-answer"
        gap_ends_late = deadline - gap  # from then on, the deadline ends a gap sooner
        guard = stream.guard
        for chunk in iter_ndjson(stream):
            now = time.monotonic()
            if now < gap_ends_late:
                guard.arm(now + gap, idle)
            else:
                guard.arm(deadline, DEADLINE)
            piece = chunk.get("response")
            if isinstance(piece, str) and piece:
                size += len(piece.encode())
                if size > MAX_TEXT_BYTES:
                    raise JobFailure("inference_failed",
                                     f"the answer exceeds {MAX_TEXT_BYTES} bytes; set num_predict")
                parts.append(piece)
            if chunk.get("done") is True:
                self._last = time.monotonic()
                return "".join(parts), chunk
        if guard.expired:
            raise JobFailure("timeout", guard.expired)
        raise JobFailure("inference_failed", "Ollama ended the stream without a done chunk")

    def _unreachable(self) -> JobFailure:
        return JobFailure("inference_failed", f"Ollama is not reachable at {self.endpoint}")
