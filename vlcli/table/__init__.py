"""The table: the only Lance access (storage), every column (schema), queries, status, --where predicates, repair."""
