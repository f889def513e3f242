"""`vl ingest`: where images come from (sources) and how they become rows (ingest)."""
