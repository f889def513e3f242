"""`vl filter`: the step and its rules (step), perceptual hash (phash), near-duplicate groups (dedup), semantic pairs (semantic)."""
