"""Test helpers that ship with vl: a local OpenAI-compatible stub server, a stub LLM backend (`stub`)
and tiny-model builders.

For vl's own tests and for plugin authors (run a backend offline, against real code paths); the demo and
the offline preset also use the tiny models and the stub LLM. The steps never import this package.
"""
