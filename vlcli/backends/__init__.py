"""Model backends: one small protocol per capability, a lazy registry, and built-in implementations."""

from vlcli.backends.registry import available, create, register

__all__ = ["available", "create", "register"]
