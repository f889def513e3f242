"""`vl validate`: the step (step), the per-item rules (rules), the optional model checks (model_checks)."""
