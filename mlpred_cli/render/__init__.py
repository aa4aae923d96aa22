"""Turning library results into tables, JSON, CSV and text (verdicts, sparklines)."""
