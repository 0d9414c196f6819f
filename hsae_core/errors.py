"""User-facing errors: one clear line, no traceback, exit status 2 from the CLI."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, for a one-line error; the type name where the message
    alone says nothing (a bare ``KeyError(101)``), cut at ``limit`` characters."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    if not any(ch.isalpha() for ch in text):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class HsaeError(Exception):
    """An error caused by the user's input or environment, with a message that says what to do."""


class DataError(HsaeError):
    """A table, column or target that cannot be used."""


class ModelError(HsaeError):
    """An SAE or embedding model that cannot be loaded or does not fit the data."""


class LLMError(HsaeError):
    """An LLM endpoint that is not configured or cannot be used at all."""


class EngineError(HsaeError):
    """A compute engine (Ray) that is not installed, cannot be reached or lost work it cannot redo."""


class StorageError(HsaeError):
    """An output or cache location that cannot be written, or a file on disk that is damaged."""


class WorkspaceBusyError(HsaeError):
    """Another process is building the same workspace."""


class WorkspaceChangedError(StorageError):
    """A workspace was rebuilt by another process while this one was reading it: open it again."""
