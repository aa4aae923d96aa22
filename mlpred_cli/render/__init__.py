"""Turning library results into tables, JSON and CSV."""

from mlpred_cli.render.output import OutputFormat, emit_object, emit_rows, to_jsonable

__all__ = ["OutputFormat", "emit_object", "emit_rows", "to_jsonable"]
