"""Test helpers that ship with vl: a local OpenAI-compatible stub server and tiny-model builders.

For vl's own tests and for plugin authors (run a backend offline, against real code paths); the demo and
the offline preset also use the tiny models. The steps never import this package.
"""
