"""A scenario's own RabbitMQ configuration: extra ``rabbitmq.conf`` settings, application
environment (``advanced.config``) and policies, checked before the node starts.

Responsibility: say what a scenario wants of the broker as frozen data (`RabbitMQSettings`),
reject what cannot work with one line naming the setting and the fix (`validate`, before any
server starts; `boot_error`, when RabbitMQ itself refuses the file), and render the files and
the ``rabbitmqctl set_policy`` arguments.

Why three parts:

- ``conf``: what the new-style ``rabbitmq.conf`` can set, checked against the cuttlefish schema
  files of the applications the node runs (the key must exist; integer and enum values are
  checked; other datatypes are left to RabbitMQ, whose refusal still comes back as one line);
- ``app_env``: application environment the schema does not expose, written to
  ``advanced.config``. The one scenarios need: ``channel_tick_interval``. RabbitMQ 3.10 checks
  ``consumer_timeout`` once per channel tick (60 s by default), so a 3 s timeout compressed
  into a scenario also needs a short tick, or it bites only a minute later;
- ``policies``: applied with ``rabbitmqctl set_policy`` once the node answers (they live in
  the node's database, so they survive its restarts).

Example:
    >>> s = RabbitMQSettings(conf={"consumer_timeout": 3000}, app_env={"channel_tick_interval": 500})
    >>> s.conf_lines()
    ['consumer_timeout = 3000']
    >>> s.advanced_config()
    '[{rabbit, [{channel_tick_interval, 500}]}].\\n'
    >>> RabbitMQPolicy("ttl", "^default$", {"message-ttl": 60000}).set_policy_args()
    ['set_policy', '--apply-to', 'queues', '--priority', '0', 'ttl', '^default$', '{"message-ttl": 60000}']
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

#: Keys the harness writes itself: the node must listen where the stack's proxies point, with
#: the stack's credentials. A scenario changing them would cut the stack from its own broker.
RESERVED_PREFIXES = ("listeners.", "default_user", "default_pass", "default_vhost", "distribution.listener.",
                     "loopback_users")

_ATOM = re.compile(r"^[a-z][a-zA-Z0-9_]*$")
_KEY = re.compile(r"^[A-Za-z0-9_$]+(\.[A-Za-z0-9_$-]+)*$")
_APPLY_TO = ("queues", "exchanges", "all")


@dataclass(frozen=True, slots=True)
class RabbitMQPolicy:
    """One policy, as ``rabbitmqctl set_policy`` takes it.

    Example:
        >>> RabbitMQPolicy("dlx", ".*", {"dead-letter-exchange": "dlx"}, priority=1).to_json()["priority"]
        1
    """

    name: str
    pattern: str
    definition: Mapping[str, Any]
    apply_to: str = "queues"
    priority: int = 0

    def __post_init__(self) -> None:
        where = f"policy {self.name!r}"
        if not self.name or not re.fullmatch(r"[A-Za-z0-9_.:-]+", self.name):
            raise ConfigError(f"policy name {self.name!r} is not usable: give letters, digits, '_', '-', '.' or ':'")
        if self.apply_to not in _APPLY_TO:
            raise ConfigError(f"{where}: apply_to={self.apply_to!r} is not one of {', '.join(_APPLY_TO)}")
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ConfigError(f"{where}: pattern {self.pattern!r} is not a regular expression ({exc}): fix it") from exc
        if not isinstance(self.definition, Mapping) or not self.definition:
            raise ConfigError(f"{where}: the definition is empty: give at least one key, e.g. {{'message-ttl': 60000}}")
        try:
            json.dumps(dict(self.definition))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: the definition is not JSON ({exc}): use numbers, strings, lists") from exc
        if not isinstance(self.priority, int) or isinstance(self.priority, bool) or self.priority < 0:
            raise ConfigError(f"{where}: priority must be a non-negative integer, not {self.priority!r}")

    def set_policy_args(self) -> list[str]:
        return ["set_policy", "--apply-to", self.apply_to, "--priority", str(self.priority), self.name, self.pattern,
                json.dumps(dict(self.definition))]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "pattern": self.pattern, "definition": dict(self.definition),
                "apply_to": self.apply_to, "priority": self.priority}


def _render(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True, slots=True)
class RabbitMQSettings:
    """What a scenario wants of its RabbitMQ node on top of the harness's own configuration.

    conf:     ``rabbitmq.conf`` key -> value (``{"consumer_timeout": 3000}``)
    app_env:  ``rabbit`` application environment -> integer, boolean or atom, in ``advanced.config``
    policies: applied after boot with ``rabbitmqctl set_policy``

    Example:
        >>> RabbitMQSettings(conf={"listeners.tcp.1": "0.0.0.0:5672"})      # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        harness.errors.ConfigError: rabbitmq conf: 'listeners.tcp.1' is set by the harness ...
    """

    conf: Mapping[str, object] = field(default_factory=dict)
    app_env: Mapping[str, object] = field(default_factory=dict)
    policies: tuple[RabbitMQPolicy, ...] = ()

    def __post_init__(self) -> None:
        for key, value in self.conf.items():
            if not isinstance(key, str) or not _KEY.match(key):
                raise ConfigError(f"rabbitmq conf: {key!r} is not a rabbitmq.conf key: use dotted names like "
                                  "'consumer_timeout' or 'queue_master_locator'")
            if key.startswith(RESERVED_PREFIXES):
                raise ConfigError(f"rabbitmq conf: {key!r} is set by the harness (the stack's listener and "
                                  "credentials): remove it")
            text = _render(value)
            if not text.strip() or "\n" in text:
                raise ConfigError(f"rabbitmq conf: {key} = {value!r} is not a one-line value: give one")
        for key, value in self.app_env.items():
            if not isinstance(key, str) or not _ATOM.match(key):
                raise ConfigError(f"rabbitmq app_env: {key!r} is not an Erlang atom: use a name like "
                                  "'channel_tick_interval'")
            if not (isinstance(value, int) or (isinstance(value, str) and _ATOM.match(value))):
                raise ConfigError(f"rabbitmq app_env: {key} = {value!r}: give an integer, a boolean or an atom "
                                  "(other terms need an advanced.config of your own)")
        if not isinstance(self.policies, tuple) or not all(isinstance(p, RabbitMQPolicy) for p in self.policies):
            raise ConfigError("rabbitmq policies: give a tuple of RabbitMQPolicy")
        names = [p.name for p in self.policies]
        if len(set(names)) != len(names):
            raise ConfigError(f"rabbitmq policies: a name is used twice ({', '.join(names)}): give each its own")

    def __bool__(self) -> bool:
        return bool(self.conf or self.app_env or self.policies)

    def conf_lines(self) -> list[str]:
        return [f"{k} = {_render(v)}" for k, v in self.conf.items()]

    def advanced_config(self) -> str | None:
        """The ``advanced.config`` text, None when there is no application environment to set."""
        if not self.app_env:
            return None
        body = ", ".join(f"{{{k}, {_render(v)}}}" for k, v in self.app_env.items())
        return f"[{{rabbit, [{body}]}}].\n"

    def to_json(self) -> dict[str, Any]:
        return {"conf": {k: _render(v) for k, v in self.conf.items()},
                "app_env": {k: _render(v) for k, v in self.app_env.items()},
                "policies": [p.to_json() for p in self.policies]}


# -- checks against the installed RabbitMQ ------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Mapping:
    pattern: re.Pattern[str]
    name: str
    datatype: str          # "integer", "enum" or "" (not checked here)
    enum: tuple[str, ...]
    minimum: int | None


_MAPPING = re.compile(r'^\{mapping,\s*"([^"]+)"', re.M)
_INT_VALIDATORS = {"non_negative_integer": 0, "non_zero_positive_integer": 1, "positive_integer": 1}


def schema_mappings(schema_files: Iterable[Path]) -> list[_Mapping]:
    """Every ``{mapping, "key", ...}`` of the cuttlefish schema files, with the datatypes checked here."""
    out: list[_Mapping] = []
    for path in schema_files:
        text = path.read_text(errors="replace")
        starts = [m for m in _MAPPING.finditer(text)]
        for i, m in enumerate(starts):
            block = text[m.start(): starts[i + 1].start() if i + 1 < len(starts) else len(text)]
            block = block.split("\n{translation", 1)[0].split("\n{validator", 1)[0]
            name = m.group(1)
            rx = re.compile("^" + r"\.".join("[^.]+" if part.startswith("$") else re.escape(part)
                                             for part in name.split(".")) + "$")
            datatype, minimum = "", None
            enum: tuple[str, ...] = ()
            if re.search(r"\{datatype,\s*integer\}", block):
                datatype = "integer"
                for v, low in _INT_VALIDATORS.items():
                    if f'"{v}"' in block:
                        minimum = low
            elif (e := re.search(r"\{datatype,\s*\{enum,\s*\[([^\]]*)\]\}\}", block)) is not None:
                datatype, enum = "enum", tuple(a.strip() for a in e.group(1).split(",") if a.strip())
            out.append(_Mapping(rx, name, datatype, enum, minimum))
    return out


def app_env_keys(app_file: Path) -> set[str]:
    """The keys of the ``{env, [...]}`` list of an application's ``.app`` file (their defaults)."""
    text = app_file.read_text(errors="replace")
    m = re.search(r"\{env,\s*\[", text)
    if m is None:
        return set()
    return set(re.findall(r"^\s*\{([a-z][a-zA-Z0-9_]*),", text[m.end():], re.M))


def validate(settings: RabbitMQSettings, schema_files: Iterable[Path], app_file: Path | None,
             version: str = "") -> None:
    """Raise ConfigError naming the first setting this RabbitMQ does not know, or a bad value.

    Example:
        >>> validate(RabbitMQSettings(), [], None)      # nothing asked, nothing to check
    """
    where = f"RabbitMQ {version}".strip()
    mappings = schema_mappings(schema_files)
    if mappings:
        for key, value in settings.conf.items():
            found = next((m for m in mappings if m.pattern.match(key)), None)
            if found is None:
                near = difflib.get_close_matches(key, [m.name for m in mappings], n=1)
                hint = f"did you mean {near[0]!r}?" if near else "see rabbitmq.com/configure.html"
                raise ConfigError(f"rabbitmq conf: {where} has no setting {key!r} ({hint}): fix or remove it")
            _check_value(found, key, _render(value))
    if app_file is not None and app_file.is_file() and settings.app_env:
        known = app_env_keys(app_file)
        for key in settings.app_env:
            if known and key not in known:
                near = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f"did you mean {near[0]!r}?" if near else "see the rabbit application's environment"
                raise ConfigError(f"rabbitmq app_env: {where} has no application setting {key!r} ({hint}): "
                                  "fix or remove it")


def _check_value(m: _Mapping, key: str, text: str) -> None:
    if m.datatype == "integer":
        try:
            n = int(text)
        except ValueError:
            raise ConfigError(f"rabbitmq conf: {key} = {text!r} is not an integer: give one, e.g. "
                              f"{key} = 30000") from None
        if m.minimum is not None and n < m.minimum:
            raise ConfigError(f"rabbitmq conf: {key} = {n} is below {m.minimum}: give at least {m.minimum}")
    elif m.datatype == "enum" and text not in m.enum:
        raise ConfigError(f"rabbitmq conf: {key} = {text!r} is not one of {', '.join(m.enum)}: pick one")


_BOOT_ERROR_HEAD = re.compile(r"Error preparing configuration in phase (\w+):")
_LOG_PREFIX = re.compile(r"^\S+ \S+ \[\w+\] <[\d.]+> ?")


def boot_error(log_text: str) -> str | None:
    """The reason RabbitMQ refused its configuration at boot, as one line, or None.

    Example:
        >>> boot_error("Error preparing configuration in phase validation:\\n"
        ...            "  - consumer_timeout invalid, number should be greater or equal to one\\n")
        'consumer_timeout invalid, number should be greater or equal to one'
    """
    lines = [_LOG_PREFIX.sub("", ln) for ln in log_text.splitlines()]
    for i, line in enumerate(lines):
        if _BOOT_ERROR_HEAD.search(line):
            reasons = []
            for nxt in lines[i + 1: i + 8]:
                s = nxt.strip()
                if not s.startswith("- "):
                    break
                reasons.append(s[2:].strip())
            return "; ".join(reasons) or line.strip()
    m = re.search(r"Error (?:parsing|reading) (?:configuration|advanced\.config|.*config)[^\n]*", log_text)
    return m.group(0).strip() if m else None
