"""Model backends: one small protocol per capability, a registry, and built-in implementations."""

from vlcli.backends.base import available, create, register

__all__ = ["available", "create", "register"]
