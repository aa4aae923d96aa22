"""History management: archive old predictions to Parquet and restore them."""
