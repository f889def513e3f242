"""`vl crop`: the step (step) and its pure box geometry (geometry)."""
