"""`vl synth`: the step (step), its prompts (prompts), reading model replies (replies), the Q/A item (qa)."""
