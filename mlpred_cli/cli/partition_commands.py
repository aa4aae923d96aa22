"""`mlpred partition` commands."""

from __future__ import annotations
