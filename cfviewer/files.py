"""What identifies a file: the sha256 of its bytes (study cases, artifacts, exports, model
weights and bundles all name files by it). Standard library only."""

from __future__ import annotations

import hashlib
import os


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of the file's bytes, read in `chunk`-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def save_torch_atomic(obj: object, path: str | os.PathLike) -> None:
    """``torch.save`` through a temporary file beside ``path`` (its folder created), so an
    interrupted write never leaves a half checkpoint where a resume would read it."""
    import torch
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
