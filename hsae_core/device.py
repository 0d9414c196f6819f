"""Where torch work runs: ``resolve_device('auto'|'cpu'|'cuda')`` turns a user's choice into a torch device name."""

from __future__ import annotations

from .errors import ModelError
from .settings import DEVICE, DEVICES


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(spec: str | None = DEVICE) -> str:
    """'auto' -> 'cuda' when a CUDA device is present, else 'cpu'; 'cpu'/'cuda' (or 'cuda:N') as asked.

    Asking for CUDA where there is none is a ModelError naming ``device``, never a silent fall-back.
    """
    spec = (spec or "auto").strip().lower()
    if spec not in DEVICES and not (spec.startswith("cuda:") and spec[5:].isdigit()):
        raise ModelError(f"`device` must be one of {', '.join(DEVICES)} (or cuda:N), got '{spec}'")
    if spec == "cpu":
        return "cpu"
    if spec == "auto":
        return "cuda" if cuda_available() else "cpu"
    if not cuda_available():
        import torch

        raise ModelError(
            f"`device` is '{spec}' but CUDA is not available here (torch {torch.__version__}); use auto or cpu"
        )
    return spec
