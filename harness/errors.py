"""The harness's exception hierarchy: misuse (ConfigError) is kept apart from run outcomes.

Every message says what happened, what was expected and how to fix it.

Example:
    >>> raise ConfigError("unknown provider 'podman': use one of local, containers, external")
    Traceback (most recent call last):
    ...
    harness.errors.ConfigError: unknown provider 'podman': use one of local, containers, external
"""

from __future__ import annotations


class HarnessError(Exception):
    """Root of every error the harness raises on purpose."""


class ConfigError(HarnessError, ValueError):
    """The user asked for something that cannot work (bad option, bad schedule, missing binary)."""


class InvalidSchedule(ConfigError):
    """A fault schedule is malformed; raised when it is built, never mid-run."""


class StackStartTimeout(HarnessError, TimeoutError):
    """A server of the stack did not become ready in time; the message carries its log tail."""


class UnsupportedFault(HarnessError):
    """The fault needs a capability this stack provider does not have (e.g. killing an external broker)."""
