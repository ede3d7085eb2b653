"""The user's claim: the guarantee a verdict judges, whatever the configuration happens to allow.

Responsibility: one frozen value, `Claim`, with two axes in the user's words:

- ``delivery``: ``at-least-once`` (default: no published task is ever lost) or
  ``at-most-once`` (a task may be lost, never run twice to completion by design);
- ``effects``: ``exactly-once`` (default: every declared effect stored exactly once) or
  ``at-least-once`` (an effect may be stored twice, never missing).

The configuration never widens a claim: early acks make a loss *possible*, they do not make it
acceptable. A checker marks an anomaly ``allowed`` only when the claim allows it, and then with
``by_claim`` so reports can say "allowed by your claim", never "nothing is lost".

Example:
    >>> Claim.parse("at-most-once").delivery
    'at-most-once'
    >>> Claim.parse("delivery=at-least-once,effects=at-least-once").allows_duplicate_effects
    True
    >>> str(Claim())
    'at-least-once delivery, exactly-once effects'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError

__all__ = ["DELIVERY", "EFFECTS", "Claim"]

DELIVERY: tuple[str, ...] = ("at-least-once", "at-most-once")
EFFECTS: tuple[str, ...] = ("exactly-once", "at-least-once")

_HINT = ("use --claim at-least-once | at-most-once | effects=exactly-once | effects=at-least-once, "
         "or both as delivery=...,effects=...")


@dataclass(frozen=True, slots=True)
class Claim:
    """What the user needs from their Celery system (see the module docstring).

    >>> Claim(effects="at-least-once").allows_loss, Claim(delivery="at-most-once").allows_loss
    (False, True)
    """

    delivery: str = "at-least-once"
    effects: str = "exactly-once"

    def __post_init__(self) -> None:
        if self.delivery not in DELIVERY:
            raise ConfigError(f"claim delivery {self.delivery!r} is not one of {list(DELIVERY)}: {_HINT}")
        if self.effects not in EFFECTS:
            raise ConfigError(f"claim effects {self.effects!r} is not one of {list(EFFECTS)}: {_HINT}")

    @property
    def allows_loss(self) -> bool:
        """A published task may be lost (at-most-once delivery)."""
        return self.delivery == "at-most-once"

    @property
    def allows_duplicate_effects(self) -> bool:
        """A declared effect may be stored more than once (at-least-once effects)."""
        return self.effects == "at-least-once"

    @property
    def is_default(self) -> bool:
        return self == Claim()

    def __str__(self) -> str:
        return f"{self.delivery} delivery, {self.effects} effects"

    @classmethod
    def parse(cls, text: str) -> Claim:
        """Read ``at-least-once``, ``at-most-once``, ``effects=at-least-once``, or ``delivery=X,effects=Y``.

        A bare value names the delivery axis when it is a delivery value, else the effects axis.

        >>> Claim.parse("effects=at-least-once")
        Claim(delivery='at-least-once', effects='at-least-once')
        >>> Claim.parse("exactly-once").effects
        'exactly-once'
        """
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"empty claim: {_HINT}")
        found: dict[str, str] = {}
        for part in text.replace(" ", "").split(","):
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep:
                value, name = name, ("delivery" if name in DELIVERY else "effects" if name in EFFECTS else "")
            if name not in ("delivery", "effects"):
                raise ConfigError(f"unknown claim {part!r}: {_HINT}")
            if name in found:
                raise ConfigError(f"the claim names {name} twice ({text!r}): {_HINT}")
            found[name] = value
        return cls(**found)

    def to_dict(self) -> dict[str, str]:
        return {"delivery": self.delivery, "effects": self.effects}

    @classmethod
    def from_any(cls, raw: Claim | str | Mapping[str, Any] | None) -> Claim:
        """A Claim from a Claim, its text, its dict, or None (the default claim).

        >>> Claim.from_any({"delivery": "at-most-once"}).allows_loss
        True
        """
        if raw is None:
            return cls()
        if isinstance(raw, Claim):
            return raw
        if isinstance(raw, str):
            return cls.parse(raw)
        if isinstance(raw, Mapping):
            unknown = sorted(set(raw) - {"delivery", "effects"})
            if unknown:
                raise ConfigError(f"a claim has only delivery and effects, not {unknown}: {_HINT}")
            return cls(**{k: str(v) for k, v in raw.items()})
        raise ConfigError(f"a claim must be text such as 'at-least-once' or a Claim, not {type(raw).__name__}")
