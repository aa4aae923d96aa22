"""Pure functions over prediction frames and aggregates -> result dataclasses."""
