"""`mlpred archive` commands."""

from __future__ import annotations
