"""Step types, read-only: what each registered step type is and its config's JSON Schema.

No models: the registry (`pipelines.steps`) is the source, the same one the planner and the
workers check configs with, so what this API publishes is what a publish or a run enforces.
"""
