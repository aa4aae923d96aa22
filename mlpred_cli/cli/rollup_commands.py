"""`mlpred rollup` commands."""

from __future__ import annotations
