"""`vl bin`: the step (step), feature math on boxes (features), bin assignment and quotas (rules)."""
