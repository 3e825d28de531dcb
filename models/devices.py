"""Which torch device a worker uses, and how many CPU threads it may take."""

from __future__ import annotations

import torch


def pick_device(preference: str) -> torch.device:
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def limit_torch_threads(device: torch.device) -> None:
    """On CPU, one torch thread per worker: parallelism comes from workers, not from oversubscription."""
    if device.type == "cpu":
        torch.set_num_threads(1)
