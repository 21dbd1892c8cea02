"""How a number reads in cfviewer's text (model cards, evaluation reports, frame captions):
fixed decimals, and one word for a value that is missing. Standard library only."""

from __future__ import annotations

import math
from typing import Any


def number(value: Any, digits: int = 3, missing: str = "n/a") -> str:
    """``value`` with ``digits`` decimals; ``missing`` for None, NaN or infinity; anything that
    is not a number (a string, say) as ``str(value)``."""
    if value is None:
        return missing
    if isinstance(value, (str, bytes)):
        return str(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{v:.{digits}f}" if math.isfinite(v) else missing
