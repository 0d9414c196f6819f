"""The one door to LLMs: an OpenAI-compatible Chat Completions client with retries and a SQLite cache.

Every LLM call in hsae goes through :class:`LLMClient`. It never raises on a failed call: after its
retries it returns ``None``, counts the failure in ``stats`` and logs a warning, so a flaky endpoint
cannot crash a long run. Answers are cached on disk, keyed by model, system prompt, prompt and every
sampling parameter; the API key is never logged, hashed or stored. With ``batch=True``,
:meth:`LLMClient.complete_many` sends its uncached prompts through the OpenAI Batch API instead (half
price, up to 24 h; see ``openai_batch.py``) and caches the answers under the same keys.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import random
import re
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from importlib import resources
from pathlib import Path
from typing import Optional

from . import settings
from .errors import LLMError
from .progress import ProgressFn, report

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o-mini"
RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
MAX_RETRY_AFTER_S = 60.0


def llm_configured() -> bool:
    """True when an API key is set (``OPENAI_API_KEY``); ``OPENAI_BASE_URL`` may point at any compatible server."""
    return settings.openai_api_key() is not None


def cache_dir() -> Path:
    """The hsae cache folder: ``$HSAE_CACHE_DIR`` or ``~/.cache/hsae``."""
    return settings.cache_dir()


def load_prompt(name: str) -> str:
    """The text of ``hsae_core/prompts/<name>.txt``."""
    return resources.files("hsae_core").joinpath("prompts", f"{name}.txt").read_text(encoding="utf-8")


_YES = re.compile(r"^\W*(yes|y|true|1)\b", re.IGNORECASE)
_NO = re.compile(r"^\W*(no|n|false|0)\b", re.IGNORECASE)


def parse_yes_no(answer: Optional[str]) -> Optional[bool]:
    """True / False for an answer that starts with yes / no; None for a missing or unparseable answer."""
    if not answer:
        return None
    text = answer.strip()
    if _YES.match(text):
        return True
    if _NO.match(text):
        return False
    return None


class _Cache:
    """A thread-safe SQLite key -> answer table (WAL mode, so several processes can share it)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, model TEXT, answer TEXT, created REAL)"
        )

    def get(self, key: str) -> Optional[str]:
        with self._lock:
            row = self._db.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def put(self, key: str, model: str, answer: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)", (key, model, answer, time.time()))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _chat_text(body: dict) -> Optional[str]:
    """The answer text of a Chat Completions response body, or None if it has none."""
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


def _retry_after_seconds(exc: Exception) -> Optional[float]:
    """Seconds the server asked us to wait (``retry-after-ms`` / ``retry-after``), if it said."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000.0
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _reason(exc: BaseException) -> str:
    """A short, key-free reason for a failed request: the underlying socket error or the server's message."""
    cause = exc.__cause__ or exc.__context__
    text = str(cause) if cause is not None and str(cause) else str(getattr(exc, "message", "") or exc)
    text = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


class LLMClient:
    """Chat Completions against OpenAI or any OpenAI-compatible server, cached, retried, never raising per call.

    ``stats`` counts ``requests`` (HTTP attempts), ``cache_hits``, ``failures`` (calls that returned None)
    and ``retries``.
    """

    def __init__(
        self,
        model: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        cache_path: str | Path | None = None,
        max_concurrency: int = 8,
        max_retries: int = 4,
        timeout: float = 60.0,
        backoff: float = 1.0,
        batch: bool = False,
        batch_dir: str | Path | None = None,
        batch_poll_s: float | None = None,
    ):
        import openai

        self.model = model or settings.llm_model()
        key = api_key or settings.openai_api_key()
        if not key:
            raise LLMError(
                "No LLM configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for a local "
                "OpenAI-compatible server), or use the offline keyword labels / activation annotation"
            )
        self.base_url = base_url or settings.openai_base_url()
        if max_concurrency < 1:
            raise LLMError("max_concurrency must be at least 1")
        self.max_concurrency = int(max_concurrency)
        self.max_retries = max(0, int(max_retries))
        self.timeout = float(timeout)
        self.backoff = float(backoff)
        self._openai = openai
        self._api = openai.OpenAI(api_key=key, base_url=self.base_url, timeout=self.timeout, max_retries=0)
        self.cache_path = Path(cache_path) if cache_path else cache_dir() / "llm_cache.sqlite"
        self._cache = _Cache(self.cache_path)
        self._stats_lock = threading.Lock()
        self.stats = {"requests": 0, "cache_hits": 0, "failures": 0, "retries": 0}
        self.batch, self.batch_dir, self.batch_poll_s = bool(batch), batch_dir, batch_poll_s
        self.batch_ids: list[str] = []  # Batch API batches this client waited on
        self.answered = 0  # calls answered by the endpoint (not from the cache)
        self.last_error: Optional[str] = None  # why the latest failed call failed, for summaries and errors

    def __repr__(self) -> str:  # never shows the key
        return f"LLMClient(model={self.model!r}, base_url={self.base_url!r})"

    def _count(self, name: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[name] += n

    @property
    def endpoint(self) -> str:
        return self.base_url or "https://api.openai.com/v1"

    def check(self, timeout: float = 15.0, attempts: int = 3) -> None:
        """One cheap call (a few tokens, never cached) proving that the endpoint answers, accepts the key and
        knows the model; raises one LLMError line otherwise. An unreachable server fails at once, a silent
        one after ``timeout`` seconds; only "busy" answers (429/5xx) are retried, briefly. In batch mode the call
        lists one batch (no chat call is paid for; the model is checked when the batch runs)."""
        api = self._api.with_options(timeout=timeout, max_retries=0)
        errors, where = self._openai, self.endpoint
        for attempt in range(attempts):
            try:
                if self.batch:  # a batch run must not pay for direct calls: list one batch instead
                    api.batches.list(limit=1)
                else:
                    api.chat.completions.create(
                        model=self.model,
                        messages=[{"role": "user", "content": "Reply OK."}],
                        max_tokens=8,
                        temperature=0.0,
                    )
                return
            except errors.APITimeoutError:
                raise LLMError(
                    f"The LLM endpoint {where} did not answer within {timeout:g} s; check OPENAI_BASE_URL "
                    "and that the server is running"
                ) from None
            except errors.APIConnectionError as exc:
                raise LLMError(
                    f"Cannot reach the LLM endpoint {where} ({_reason(exc)}); check OPENAI_BASE_URL and "
                    "that the server is running"
                ) from None
            except (errors.AuthenticationError, errors.PermissionDeniedError) as exc:
                raise LLMError(
                    f"The LLM endpoint {where} refused the API key (HTTP {exc.status_code}); check OPENAI_API_KEY"
                ) from None
            except errors.NotFoundError:
                raise LLMError(
                    f"The LLM endpoint {where} has no model '{self.model}' (HTTP 404); set HSAE_LLM_MODEL "
                    "(or `llm_model`) to a model it serves"
                ) from None
            except errors.APIStatusError as exc:
                if exc.status_code in RETRYABLE_STATUS and attempt + 1 < attempts:
                    time.sleep(min(self._delay(attempt, exc), 5.0))
                    continue
                raise LLMError(
                    f"The LLM endpoint {where} answered HTTP {exc.status_code} to a test call "
                    f"({_reason(exc)}); check the server and the model '{self.model}'"
                ) from None
            except Exception as exc:  # a malformed answer: the endpoint is not OpenAI-compatible
                raise LLMError(
                    f"The LLM endpoint {where} gave an answer that is not an OpenAI chat completion "
                    f"({type(exc).__name__}); check OPENAI_BASE_URL"
                ) from None

    def cache_key(
        self, prompt: str, *, system: str | None = None, temperature: float = 0.0, max_tokens: int = 256, **params
    ) -> str:
        """The cache key for one call: a hash of model, system prompt, prompt and every parameter."""
        payload = {
            "model": self.model,
            "system": system,
            "prompt": prompt,
            "params": {"temperature": temperature, "max_tokens": max_tokens, **params},
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode("utf-8")).hexdigest()

    def complete(
        self, prompt: str, *, system: str | None = None, temperature: float = 0.0, max_tokens: int = 256, **params
    ) -> str | None:
        """One chat completion's text, from the cache when possible; None when the call failed after retries."""
        key = self.cache_key(prompt, system=system, temperature=temperature, max_tokens=max_tokens, **params)
        cached = self._cache.get(key)
        if cached is not None:
            self._count("cache_hits")
            return cached
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        answer = self._call_with_retries(messages, temperature=temperature, max_tokens=max_tokens, **params)
        if answer is None:
            self._count("failures")
            return None
        with self._stats_lock:
            self.answered += 1
        self._cache.put(key, self.model, answer)
        return answer

    def _call_with_retries(self, messages, **params) -> str | None:
        errors = self._openai
        for attempt in range(self.max_retries + 1):
            self._count("requests")
            if attempt:
                self._count("retries")
            try:
                response = self._api.chat.completions.create(model=self.model, messages=messages, **params)
                content = response.choices[0].message.content if response.choices else None
                if content is None:
                    self.last_error = "an answer with no text"
                    log.warning("LLM %s returned an answer with no text", self.model)
                    return None
                return content
            except (errors.APITimeoutError, errors.APIConnectionError, errors.APIStatusError) as exc:
                status = getattr(exc, "status_code", None)
                retryable = status is None or status in RETRYABLE_STATUS
                what = f"HTTP {status}" if status is not None else type(exc).__name__
                if not retryable or attempt == self.max_retries:
                    self.last_error = what if status is None else f"{what}: {_reason(exc)}"
                    log.warning("LLM call to %s failed (%s) after %d attempt(s)", self.model, what, attempt + 1)
                    return None
                time.sleep(self._delay(attempt, exc))
            except Exception as exc:  # a malformed answer or client-side surprise: record, never crash the run
                self.last_error = type(exc).__name__
                log.warning("LLM call to %s failed: %s", self.model, type(exc).__name__)
                return None
        return None

    def _delay(self, attempt: int, exc: Exception) -> float:
        asked = _retry_after_seconds(exc)
        if asked is not None:
            return min(asked, MAX_RETRY_AFTER_S)
        # exponential backoff with full jitter, so parallel workers do not retry in lockstep
        return self.backoff * (2**attempt) * random.uniform(0.5, 1.5)

    def complete_many(
        self, prompts: list[str], *, progress: Optional[ProgressFn] = None, **same_params
    ) -> list[str | None]:
        """Answers for many prompts (same parameters), at most ``max_concurrency`` in flight; order kept.

        In batch mode (``batch=True``) this is :meth:`complete_batch`.
        """
        if self.batch:
            return self.complete_batch(prompts, progress=progress, **same_params)
        prompts = list(prompts)
        unique = list(dict.fromkeys(prompts))  # identical prompts are asked once
        answers: dict[str, str | None] = {}
        total = len(unique)
        report(progress, 0, total, f"0 of {total:,} LLM answers")
        if total:
            with ThreadPoolExecutor(max_workers=min(self.max_concurrency, total)) as pool:
                futures = {pool.submit(self.complete, p, **same_params): p for p in unique}
                for done, future in enumerate(as_completed(futures), 1):
                    answers[futures[future]] = future.result()
                    report(progress, done, total, f"{done:,} of {total:,} LLM answers")
        return [answers[p] for p in prompts]

    def complete_batch(
        self,
        prompts: list[str],
        *,
        system: str | None = None,
        temperature: float = 0.0,
        max_tokens: int = 256,
        progress: Optional[ProgressFn] = None,
        **params,
    ) -> list[str | None]:
        """Answers for many prompts through the OpenAI Batch API; order kept, None where a request failed.

        Cached prompts are not sent; answers are cached as each batch is read, under the keys
        :meth:`complete` uses. A rerun resumes batches already submitted (state in ``batch_dir``).
        Failures are counted in ``stats`` and logged, never raised; only a Batch API that cannot be
        used at all (upload or batch creation refused) raises :class:`LLMError`.
        """
        from .openai_batch import CHAT, request_id, run_batch

        prompts = list(prompts)
        answers: dict[str, str | None] = {}
        todo: dict[str, tuple[str, str]] = {}  # custom_id -> (prompt, cache key)
        bodies = []
        for prompt in dict.fromkeys(prompts):
            key = self.cache_key(prompt, system=system, temperature=temperature, max_tokens=max_tokens, **params)
            cached = self._cache.get(key)
            if cached is not None:
                self._count("cache_hits")
                answers[prompt] = cached
                continue
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": prompt}
            ]
            body = {
                "model": self.model,
                "messages": messages,
                "temperature": temperature,
                "max_tokens": max_tokens,
                **params,
            }
            todo[request_id(CHAT, body)] = (prompt, key)
            bodies.append(body)
        if bodies:

            def store(results: dict) -> dict:
                rejected = {}
                for cid, body in results.items():
                    text = _chat_text(body)
                    if text is None:
                        rejected[cid] = "answer with no text"
                        continue
                    prompt, key = todo[cid]
                    self._cache.put(key, self.model, text)
                    answers[prompt] = text
                return rejected

            outcome = run_batch(
                self._api,
                CHAT,
                bodies,
                state_dir=self.batch_dir,
                poll_interval=self.batch_poll_s,
                progress=progress,
                on_results=store,
            )
            self._count("requests", outcome.submitted)
            self._count("failures", len(outcome.errors))
            self.batch_ids += [b for b in outcome.batch_ids if b not in self.batch_ids]
            if outcome.errors:
                first = next(iter(outcome.errors.values()))
                log.warning(
                    "%d of %d Batch API requests to %s failed (first: %s)",
                    len(outcome.errors),
                    len(bodies),
                    self.model,
                    first,
                )
        return [answers.get(p) for p in prompts]

    def close(self) -> None:
        """Close the HTTP client and the cache."""
        self._api.close()
        self._cache.close()
