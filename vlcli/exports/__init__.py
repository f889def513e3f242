"""`vl export`: rows to HF/Parquet/images (export), Q/A files (qa, records), what they share (files), image views (views)."""
