"""User-facing errors: one clear line, no traceback, exit status 2 from the CLI."""


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
