"""`vl demo`: a generated sample folder (samples) run through the whole pipeline (demo)."""
