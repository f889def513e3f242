"""`vl run`: the pipeline, the `vl.yaml` config and its generator, presets, and DCVLR config mapping."""
