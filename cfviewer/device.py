"""Device choice: CUDA when present ("auto"), else the CPU."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def runtime_record(device: str | torch.device) -> dict[str, object]:
    """Where a training ran, for its summary: device, torch version, platform, torch threads."""
    import platform

    return {"device": str(device), "torch": torch.__version__, "platform": platform.platform(),
            "torch_threads": torch.get_num_threads()}
