"""Small numpy helpers shared by the modules that turn arrays into database values."""

from __future__ import annotations

from typing import Any

import numpy as np


def floats_or_none(values: np.ndarray) -> list[Any]:
    """``values.tolist()`` (nested for 2-D and up) with None wherever a value is not finite."""
    out: list[Any] = values.tolist()
    bad = ~np.isfinite(values)
    if bad.any():
        for position in zip(*np.nonzero(bad), strict=True):
            target = out
            for axis in position[:-1]:
                target = target[int(axis)]
            target[int(position[-1])] = None
    return out
