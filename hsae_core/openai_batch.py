"""Run many OpenAI requests through the Batch API: half the price of direct calls, answered within 24 hours.

One job: request bodies for one endpoint in, a response body or an error message per request out.

- A request's ``custom_id`` is a hash of its endpoint and body, so answers map back and identical
  requests are sent once.
- A small JSON state file per batch in ``state_dir`` (default ``$HSAE_CACHE_DIR/batches``) records the
  uploaded file, the batch id and the custom_ids it covers, before any waiting; a rerun after a crash or Ctrl-C polls
  the existing batch (or downloads a finished batch's output again) instead of paying a second time.
- Per-request errors are returned, never raised. A batch that ends ``expired``, ``failed`` or
  ``cancelled`` keeps what it produced; only its unfinished requests are resubmitted, at most
  ``max_attempts`` batches deep, and whatever is still missing after that is reported as failed.
- Requests are split to respect the API's limits: 50,000 requests (and, for embeddings, 50,000
  inputs) and 200 MB per batch file.

Results are handed to ``on_results`` in chunks as each batch's output file is read, so the caller can
put them in its cache (embeddings, LLM answers) before the batch is marked as collected.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from . import settings
from .errors import LLMError
from .progress import ProgressFn, report

log = logging.getLogger(__name__)

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
ENDPOINTS = (CHAT, EMBEDDINGS)
MAX_REQUESTS = 50_000  # per batch; for embeddings also the limit on inputs across the batch
MAX_FILE_BYTES = 190 * 1024 * 1024  # the API allows 200 MB; keep a margin for multipart framing
COMPLETION_WINDOW = "24h"
TERMINAL = {"completed", "expired", "failed", "cancelled"}
UNFINISHED_CODES = {"batch_expired", "batch_cancelled"}  # error-file lines for requests that never ran
STATE_MAX_AGE_S = 30 * 24 * 3600  # batch output files expire after 30 days
RESULT_CHUNK = 2000  # results handed to on_results at a time (bounds memory on 50k-embedding batches)
MAX_POLL_ERRORS = 10  # consecutive failed status checks before giving up (the batch keeps running remotely)

OnResults = Callable[[dict], Optional[dict]]


def request_id(endpoint: str, body: dict) -> str:
    """The stable ``custom_id`` of one request: a hash of its endpoint and body."""
    blob = json.dumps({"url": endpoint, "body": body}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "hsae-" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:48]


def default_state_dir() -> Path:
    """``$HSAE_CACHE_DIR/batches`` (or ``~/.cache/hsae/batches``): beside the caches the results go into."""
    return settings.cache_dir() / "batches"


@dataclass
class BatchOutcome:
    """What a Batch API job gave: response bodies and error messages by custom_id, and the batches used."""

    results: dict[str, dict] = field(default_factory=dict)  # empty for results handed to on_results
    errors: dict[str, str] = field(default_factory=dict)
    batch_ids: list[str] = field(default_factory=list)
    submitted: int = 0  # requests uploaded by this call (resumed batches are not counted again)
    succeeded: int = 0


def run_batch(
    client,
    endpoint: str,
    bodies: Sequence[dict],
    *,
    state_dir: str | Path | None = None,
    poll_interval: float | None = None,
    max_attempts: int = 3,
    progress: Optional[ProgressFn] = None,
    on_results: Optional[OnResults] = None,
    max_requests: int = MAX_REQUESTS,
    max_bytes: int = MAX_FILE_BYTES,
) -> BatchOutcome:
    """Run ``bodies`` (request bodies for ``endpoint``) through the Batch API and wait for them.

    ``client`` is an ``openai.OpenAI``. Returns a :class:`BatchOutcome`; results are keyed by
    :func:`request_id`. ``on_results(dict)`` receives successful bodies in chunks as they are read
    (they are then not kept in ``results``) and may return ``{custom_id: message}`` for bodies it could
    not use, which then count as errors. Raises :class:`LLMError` only when the Batch API cannot be
    used at all (upload or batch creation refused, status unreachable); the batches already submitted
    are in the state file, so running the same job again resumes them.
    """
    if endpoint not in ENDPOINTS:
        raise LLMError(f"endpoint must be one of {', '.join(ENDPOINTS)}, not {endpoint!r}")
    if max_attempts < 1:
        raise LLMError("max_attempts must be at least 1")
    wanted: dict[str, dict] = {}
    for body in bodies:
        wanted.setdefault(request_id(endpoint, body), body)
    if poll_interval is None:
        try:
            poll_interval = settings.batch_poll_s()
        except ValueError as exc:
            raise LLMError(str(exc)) from None
    job = _Job(
        client,
        endpoint,
        wanted,
        _State(Path(state_dir) if state_dir else default_state_dir()),
        float(poll_interval),
        progress,
        on_results,
        max(1, int(max_requests)),
        int(max_bytes),
    )
    return job.run(int(max_attempts))


class _State:
    """One small JSON file per uploaded batch input in ``folder`` (its batch id and custom_ids), replaced atomically."""

    def __init__(self, folder: Path):
        self.folder = folder

    def _path(self, input_file_id: str) -> Path:
        return self.folder / f"batch-{re.sub(r'[^A-Za-z0-9_-]', '_', input_file_id)}.json"

    def entries(self) -> list[dict]:
        out, cutoff = [], time.time() - STATE_MAX_AGE_S
        for path in sorted(self.folder.glob("batch-*.json")):
            try:
                entry = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(entry.get("custom_ids"), list) or not entry.get("input_file_id"):
                    raise ValueError("incomplete entry")
            except (OSError, ValueError, AttributeError):
                log.warning("Ignoring unreadable batch state file %s", path)
                continue
            if entry.get("created", 0) < cutoff:  # its output files have expired too
                path.unlink(missing_ok=True)
                continue
            out.append(entry)
        return out

    def put(self, entry: dict) -> None:
        """Write the entry's file; an entry with no custom_ids left is removed."""
        path = self._path(entry["input_file_id"])
        if not entry["custom_ids"]:
            path.unlink(missing_ok=True)
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entry), encoding="utf-8")
        os.replace(tmp, path)


class _Job:
    def __init__(self, client, endpoint, wanted, state, poll_interval, progress, on_results, max_requests, max_bytes):
        import openai

        self._openai = openai
        self.api = client.with_options(max_retries=5)  # uploads and status checks ride out transient errors
        self.base_url = str(client.base_url).rstrip("/")
        self.endpoint, self.wanted, self.state = endpoint, wanted, state
        self.poll_interval, self.progress, self.on_results = poll_interval, progress, on_results
        self.max_requests, self.max_bytes = max_requests, max_bytes
        self.outcome = BatchOutcome()
        self.remaining = set(wanted)
        self.last_problem = ""

    def run(self, max_attempts: int) -> BatchOutcome:
        total = len(self.wanted)
        report(self.progress, 0, max(total, 1), "Batch API: preparing")
        for _ in range(max_attempts):
            if not self.remaining:
                break
            entries = self._claim()
            covered = {i for e in entries for i in e["custom_ids"]}
            entries += self._submit([i for i in self.wanted if i in self.remaining and i not in covered])
            for entry, batch in self._wait(entries):
                self._collect(entry, batch)
        for cid in [i for i in self.wanted if i in self.remaining]:
            self.outcome.errors[cid] = f"not processed after {max_attempts} batch attempt(s)" + (
                f" ({self.last_problem})" if self.last_problem else ""
            )
        self.remaining.clear()
        report(
            self.progress,
            total,
            max(total, 1),
            f"Batch API: {self.outcome.succeeded} done, {len(self.outcome.errors)} failed",
        )
        return self.outcome

    # -- which batches already cover what we need -----------------------------------------------
    def _mine(self, entry: dict) -> bool:
        return entry.get("endpoint") == self.endpoint and entry.get("base_url") == self.base_url

    def _claim(self) -> list[dict]:
        claimed = []
        for entry in self.state.entries():
            if not self._mine(entry) or self.remaining.isdisjoint(entry["custom_ids"]):
                continue
            if not entry.get("batch_id"):  # uploaded, but the batch creation was never recorded
                entry["batch_id"] = self._find_batch(entry["input_file_id"], entry.get("created", 0)) or self._create(
                    entry["input_file_id"]
                )
                self.state.put(entry)
            claimed.append(entry)
            log.info("Resuming Batch API batch %s (%d requests)", entry["batch_id"], len(entry["custom_ids"]))
        return claimed

    def _find_batch(self, input_file_id: str, uploaded_at: float) -> Optional[str]:
        """A batch created from this file whose id we did not get to record (crash or timeout on create)."""
        try:
            for batch in self.api.batches.list(limit=100):  # newest first; stop before the upload
                if batch.input_file_id == input_file_id:
                    return batch.id
                if batch.created_at < uploaded_at - 3600:
                    break
        except self._openai.APIError as exc:
            log.warning("Could not list batches to find one for %s: %s", input_file_id, _short(exc))
        return None

    # -- submitting ---------------------------------------------------------------------------------
    def _submit(self, ids: list[str]) -> list[dict]:
        entries = []
        for chunk, data in self._split(ids):
            try:
                uploaded = self.api.files.create(file=("hsae-batch.jsonl", data, "application/jsonl"), purpose="batch")
            except self._openai.APIError as exc:
                raise LLMError(
                    f"The Batch API at {self.base_url} refused the upload of {len(chunk)} requests: {_short(exc)}"
                ) from None
            entry = {
                "input_file_id": uploaded.id,
                "batch_id": None,
                "endpoint": self.endpoint,
                "base_url": self.base_url,
                "created": time.time(),
                "status": "uploaded",
                "custom_ids": chunk,
            }
            self.state.put(entry)  # recorded before the batch exists: a crash now costs nothing twice
            entry["batch_id"] = self._create(uploaded.id)
            entry["status"] = "submitted"
            self.state.put(entry)
            self.outcome.submitted += len(chunk)
            log.info("Submitted Batch API batch %s (%d requests)", entry["batch_id"], len(chunk))
            entries.append(entry)
        return entries

    def _create(self, input_file_id: str) -> str:
        try:
            batch = self.api.batches.create(
                input_file_id=input_file_id,
                endpoint=self.endpoint,
                completion_window=COMPLETION_WINDOW,
                metadata={"source": "hsae"},
            )
        except self._openai.APIError as exc:
            raise LLMError(f"The Batch API at {self.base_url} refused to create a batch: {_short(exc)}") from None
        return batch.id

    def _split(self, ids: list[str]) -> Iterator[tuple[list[str], bytes]]:
        """Chunks of (custom_ids, JSONL bytes) within the request, input and size limits."""
        chunk: list[str] = []
        lines: list[bytes] = []
        size = inputs = 0
        for cid in ids:
            body = self.wanted[cid]
            line = (
                json.dumps({"custom_id": cid, "method": "POST", "url": self.endpoint, "body": body}, ensure_ascii=False)
                + "\n"
            ).encode("utf-8")
            n_in = len(body["input"]) if self.endpoint == EMBEDDINGS and isinstance(body.get("input"), list) else 1
            if len(line) > self.max_bytes:
                self.outcome.errors[cid] = "request is larger than a Batch API file may be"
                self.remaining.discard(cid)
                continue
            if chunk and (
                len(chunk) >= self.max_requests
                or inputs + n_in > self.max_requests
                or size + len(line) > self.max_bytes
            ):
                yield chunk, b"".join(lines)
                chunk, lines, size, inputs = [], [], 0, 0
            chunk.append(cid)
            lines.append(line)
            size += len(line)
            inputs += n_in
        if chunk:
            yield chunk, b"".join(lines)

    # -- waiting ------------------------------------------------------------------------------------
    def _wait(self, entries: list[dict]) -> list[tuple[dict, object]]:
        """Poll until every batch is finished; (entry, final Batch, or None if the batch is gone)."""
        pending = {e["batch_id"]: e for e in entries}
        finished, errors_in_a_row = [], 0
        self.outcome.batch_ids += [bid for bid in pending if bid not in self.outcome.batch_ids]
        while pending:
            in_flight, statuses = 0, []
            for bid, entry in list(pending.items()):
                try:
                    batch = self.api.batches.retrieve(bid)
                    errors_in_a_row = 0
                except self._openai.NotFoundError:
                    log.warning("Batch %s no longer exists at %s; its requests are submitted again", bid, self.base_url)
                    self.state.put({**entry, "custom_ids": []})
                    finished.append((entry, None))
                    del pending[bid]
                    continue
                except (self._openai.APIConnectionError, self._openai.APIStatusError) as exc:
                    errors_in_a_row += 1
                    status = getattr(exc, "status_code", None)
                    refused = status is not None and 400 <= status < 500 and status not in (408, 409, 429)
                    if refused or errors_in_a_row >= MAX_POLL_ERRORS:
                        raise LLMError(
                            f"Cannot check Batch API batch {bid} at {self.base_url} ({_short(exc)}); "
                            "it keeps running there: run the same command again to resume"
                        ) from None
                    continue
                if batch.status in TERMINAL:
                    finished.append((entry, batch))
                    del pending[bid]
                else:
                    counts = getattr(batch, "request_counts", None)
                    in_flight += (counts.completed + counts.failed) if counts else 0
                    statuses.append(batch.status)
            if pending:
                done = len(self.wanted) - len(self.remaining) + in_flight
                report(
                    self.progress,
                    min(done, len(self.wanted)),
                    len(self.wanted),
                    f"Batch API: {len(pending)} batch(es) {', '.join(sorted(set(statuses))) or 'waiting'}",
                )
                time.sleep(self.poll_interval)
        return finished

    # -- collecting ---------------------------------------------------------------------------------
    def _collect(self, entry: dict, batch) -> None:
        """Read a finished batch's output and error files; settle what it answered, leave the rest to resubmit."""
        if batch is None:
            return
        covered = set(entry["custom_ids"])
        ok: set[str] = set()
        failed: dict[str, str] = {}
        chunk: dict[str, dict] = {}
        bad_lines = 0
        try:
            for cid, body, error in self._records(batch, covered):
                if cid is None:
                    bad_lines += 1
                elif error is None:
                    ok.add(cid)
                    if cid in self.remaining:
                        chunk[cid] = body
                        if len(chunk) >= RESULT_CHUNK:
                            ok -= self._deliver(chunk)
                            chunk = {}
                elif error is not _UNFINISHED:
                    failed[cid] = error
            ok -= self._deliver(chunk)
        except self._openai.NotFoundError:  # output file gone (expired after 30 days): run those again
            log.warning("The output of batch %s is no longer available; its requests are submitted again", batch.id)
            self._deliver(chunk)
            self.state.put({**entry, "custom_ids": []})
            return
        except self._openai.APIError as exc:
            raise LLMError(
                f"Could not download the results of batch {batch.id} ({_short(exc)}); "
                "run the same command again to resume"
            ) from None
        if bad_lines:
            log.warning("Batch %s: %d output line(s) could not be read", batch.id, bad_lines)
        problem = _batch_problem(batch)
        if batch.status != "completed":
            self.last_problem = problem
            log.warning("Batch %s ended %s; the unfinished requests are submitted again", batch.id, problem)
        for cid in covered & self.remaining:
            if cid in ok:
                continue  # delivered above
            if cid in failed:
                self.outcome.errors[cid] = failed[cid]
            elif batch.status == "completed":
                why = "no result in the batch output" + (f" ({bad_lines} unreadable line(s))" if bad_lines else "")
                self.outcome.errors[cid] = f"batch {batch.id}: {why}"
            else:
                continue  # unfinished: stays remaining and goes into the next batch
            self.remaining.discard(cid)
        # Only answered requests stay claimed by this batch: failed ones are asked again by a later run.
        self.state.put({**entry, "custom_ids": [i for i in entry["custom_ids"] if i in ok], "status": batch.status})

    def _deliver(self, chunk: dict) -> set:
        """Hand results over; returns the ids the caller rejected (recorded as errors)."""
        if not chunk:
            return set()
        rejected: dict = {}
        if self.on_results is None:
            self.outcome.results.update(chunk)
        else:
            rejected = self.on_results(dict(chunk)) or {}
        self.outcome.errors.update({cid: str(msg) for cid, msg in rejected.items() if cid in chunk})
        self.outcome.succeeded += len(chunk) - len(rejected)
        self.remaining.difference_update(chunk)
        return set(rejected)

    def _records(self, batch, covered: set) -> Iterator[tuple[Optional[str], Optional[dict], object]]:
        """(custom_id, body, error) per line of the output and error files; error is None for a success,
        ``_UNFINISHED`` for a request the batch never ran, else a message. custom_id None: unreadable line."""
        for file_id in (getattr(batch, "output_file_id", None), getattr(batch, "error_file_id", None)):
            for line in self._lines(file_id):
                try:
                    record = json.loads(line)
                    cid = record.get("custom_id")
                except (ValueError, AttributeError):
                    yield None, None, None
                    continue
                if cid not in covered:
                    if cid is None:
                        yield None, None, None
                    continue
                yield (cid, *_parse_record(record, self.endpoint))

    def _lines(self, file_id: Optional[str]) -> Iterable[str]:
        if not file_id:
            return
        with self.api.files.with_streaming_response.content(file_id) as response:
            for line in response.iter_lines():
                if line.strip():
                    yield line


_UNFINISHED = object()


def _parse_record(record: dict, endpoint: str) -> tuple[Optional[dict], object]:
    """(body, error) of one output/error-file record; see :meth:`_Job._records`."""
    error = record.get("error")
    response = record.get("response") if isinstance(record.get("response"), dict) else {}
    if isinstance(error, dict) and error.get("code") in UNFINISHED_CODES:
        return None, _UNFINISHED
    if error:
        message = error.get("message") if isinstance(error, dict) else str(error)
        code = error.get("code") if isinstance(error, dict) else None
        return None, f"{code}: {message}" if code else str(message)
    status, body = response.get("status_code"), response.get("body")
    if status != 200:
        detail = (
            body.get("error", {}).get("message")
            if isinstance(body, dict) and isinstance(body.get("error"), dict)
            else None
        )
        return None, f"HTTP {status}" + (f": {detail}" if detail else "")
    key = "choices" if endpoint == CHAT else "data"
    if not isinstance(body, dict) or not isinstance(body.get(key), list) or not body[key]:
        return None, f"malformed response body (no {key})"
    return body, None


def _batch_problem(batch) -> str:
    text = batch.status
    errors = getattr(getattr(batch, "errors", None), "data", None) or []
    if errors:
        first = errors[0]
        text += f": {getattr(first, 'code', None) or ''} {getattr(first, 'message', None) or ''}".rstrip()
    return text


def _short(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"HTTP {status}: {message}" if status else message
