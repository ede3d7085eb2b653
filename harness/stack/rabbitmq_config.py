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

Where they go: the local single node and every node of the local cluster write ``conf`` into
their own ``rabbitmq.conf`` (`merge_conf`: a scenario's key replaces the harness's default) and
``app_env`` into ``advanced.config``; the cluster applies the policies once, on the formed
cluster. The containers stack copies `container_files` into the broker container before it
starts (``/etc/rabbitmq/conf.d/90-chaos-scenario.conf``, ``/etc/rabbitmq/advanced.config``).
Both check the settings first against the schemas of the RabbitMQ that will run them
(`RabbitMQSchema`): the host's package, or the files inside the broker's image.

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
import io
import json
import re
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness.errors import ConfigError, HarnessError

#: Keys the harness writes itself: the node must listen where the stack's proxies point, with
#: the stack's credentials. A scenario changing them would cut the stack from its own broker.
RESERVED_PREFIXES = ("listeners.", "default_user", "default_pass", "default_vhost", "distribution.listener.",
                     "loopback_users")

#: Keys the local cluster writes itself: how its nodes find each other (`rabbitmq_cluster`).
CLUSTER_RESERVED_PREFIXES = ("cluster_formation.",)
#: Settings of which rabbitmq.conf should hold one form only: a scenario's
#: ``vm_memory_high_watermark.absolute`` replaces the harness's ``.relative`` (RabbitMQ would let
#: the relative one win, and silently ignore the scenario's).
_FAMILIES = ("vm_memory_high_watermark.", "disk_free_limit.")

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

    def replaces(self, key: str) -> bool:
        """Whether a scenario's conf replaces the harness's default line `key` (same key, or the
        same one-form family, e.g. ``disk_free_limit.*``).

        Example:
            >>> s = RabbitMQSettings(conf={"vm_memory_high_watermark.absolute": "1GB"})
            >>> s.replaces("vm_memory_high_watermark.relative"), s.replaces("disk_free_limit.absolute")
            (True, False)
        """
        if key in self.conf:
            return True
        family = next((f for f in _FAMILIES if key.startswith(f)), None)
        return family is not None and any(k.startswith(family) for k in self.conf)

    def check_for_cluster(self) -> None:
        """Refuse what the local cluster sets itself (how its nodes find each other).

        Example:
            >>> RabbitMQSettings(conf={"cluster_formation.peer_discovery_backend": "dns"}).check_for_cluster()
            Traceback (most recent call last):
            ...
            harness.errors.ConfigError: rabbitmq conf: 'cluster_formation.peer_discovery_backend' is set by the \
harness on a cluster (how its nodes find each other): remove it
        """
        for key in self.conf:
            if key.startswith(CLUSTER_RESERVED_PREFIXES):
                raise ConfigError(f"rabbitmq conf: {key!r} is set by the harness on a cluster (how its nodes find "
                                  "each other): remove it")

    def without_policies(self) -> RabbitMQSettings:
        """The same conf and app_env, no policies (a cluster's nodes; the cluster applies them once)."""
        return RabbitMQSettings(conf=self.conf, app_env=self.app_env)

    def summary(self) -> str:
        """What was asked, for an error message.

        Example:
            >>> RabbitMQSettings(conf={"consumer_timeout": 3000}, app_env={"channel_tick_interval": 500}).summary()
            'settings asked: consumer_timeout = 3000, app_env channel_tick_interval'
        """
        parts = [*self.conf_lines(), *(f"app_env {k}" for k in self.app_env)]
        return "settings asked: " + ", ".join(parts) if parts else "no scenario setting was asked"

    def to_json(self) -> dict[str, Any]:
        return {"conf": {k: _render(v) for k, v in self.conf.items()},
                "app_env": {k: _render(v) for k, v in self.app_env.items()},
                "policies": [p.to_json() for p in self.policies]}


def merge_conf(defaults: Mapping[str, str], settings: RabbitMQSettings) -> list[str]:
    """``rabbitmq.conf`` lines: the harness's defaults a scenario does not replace, then the scenario's.

    One line per setting, so what the node runs with is what the file says.

    Example:
        >>> merge_conf({"log.console.level": "warning", "vm_memory_high_watermark.relative": "0.8"},
        ...            RabbitMQSettings(conf={"vm_memory_high_watermark.absolute": "512MB"}))
        ['log.console.level = warning', 'vm_memory_high_watermark.absolute = 512MB']
    """
    return [f"{k} = {v}" for k, v in defaults.items() if not settings.replaces(k)] + settings.conf_lines()


#: Where the containers stack puts the scenario's files in the broker's image (both the official
#: image and chaos/rabbitmq:local read conf.d after rabbitmq.conf, and advanced.config).
CONTAINER_CONF = "etc/rabbitmq/conf.d/90-chaos-scenario.conf"
CONTAINER_ADVANCED = "etc/rabbitmq/advanced.config"


def container_files(settings: RabbitMQSettings) -> dict[str, str]:
    """Path (relative to ``/``) -> text of the files a broker container gets before it starts.

    Example:
        >>> container_files(RabbitMQSettings(conf={"consumer_timeout": 3000}))
        {'etc/rabbitmq/conf.d/90-chaos-scenario.conf': 'consumer_timeout = 3000\\n'}
        >>> container_files(RabbitMQSettings())
        {}
    """
    out: dict[str, str] = {}
    if settings.conf:
        out[CONTAINER_CONF] = "".join(f"{line}\n" for line in settings.conf_lines())
    advanced = settings.advanced_config()
    if advanced is not None:
        out[CONTAINER_ADVANCED] = advanced
    return out


def apply_policies(policies: Iterable[RabbitMQPolicy], ctl: Callable[..., str]) -> None:
    """``rabbitmqctl set_policy`` for each policy through `ctl`; a refusal is one ConfigError line.

    `ctl(*args)` runs rabbitmqctl (on a node, in a container) and raises HarnessError with its
    output when it fails.

    Example:
        >>> def ctl(*args):
        ...     raise HarnessError("rabbitmqctl set_policy failed with code 1: Setting policy ...\\n"
        ...                        "Error:\\n[{<<\\"no-such-key\\">>,<<\\"unrecognised policy key\\">>}]")
        >>> apply_policies([RabbitMQPolicy("bad", ".*", {"no-such-key": 1})], ctl)
        Traceback (most recent call last):
        ...
        harness.errors.ConfigError: RabbitMQ refused policy 'bad': [{<<"no-such-key">>,<<"unrecognised \
policy key">>}]: fix its definition
    """
    for policy in policies:
        try:
            ctl(*policy.set_policy_args())
        except HarnessError as exc:
            # rabbitmqctl prints what it tried, then "Error:" and the reason: keep the reason.
            text = str(exc)
            detail = " ".join(text.split("Error:", 1)[1].split()) if "Error:" in text else " ".join(text.split())
            raise ConfigError(f"RabbitMQ refused policy {policy.name!r}: {detail}: fix its definition") from None


# -- checks against the RabbitMQ that will run the settings ------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Mapping:
    pattern: re.Pattern[str]
    name: str
    datatype: str          # "integer", "enum" or "" (not checked here)
    enum: tuple[str, ...]
    minimum: int | None


_MAPPING = re.compile(r'^\{mapping,\s*"([^"]+)"', re.M)
_INT_VALIDATORS = {"non_negative_integer": 0, "non_zero_positive_integer": 1, "positive_integer": 1}


def _mappings_of(text: str) -> list[_Mapping]:
    out: list[_Mapping] = []
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


def schema_mappings(schema_files: Iterable[Path]) -> list[_Mapping]:
    """Every ``{mapping, "key", ...}`` of the cuttlefish schema files, with the datatypes checked here."""
    return [m for path in schema_files for m in _mappings_of(path.read_text(errors="replace"))]


def _env_keys(app_text: str) -> set[str]:
    m = re.search(r"\{env,\s*\[", app_text)
    if m is None:
        return set()
    return set(re.findall(r"^\s*\{([a-z][a-zA-Z0-9_]*),", app_text[m.end():], re.M))


def app_env_keys(app_file: Path) -> set[str]:
    """The keys of the ``{env, [...]}`` list of an application's ``.app`` file (their defaults)."""
    return _env_keys(app_file.read_text(errors="replace"))


_APP_DEPS = re.compile(r"\{(?:included_)?applications,\s*\[([^\]]*)\]")
#: What the broker itself runs on (and getopt, which cuttlefish calls without declaring it).
CORE_APPS = ("rabbit", "rabbitmq_prelaunch", "getopt")


def needed_apps(app_texts: Mapping[str, str], roots: Iterable[str]) -> set[str]:
    """The applications of `app_texts` (name -> ``.app`` text) that `roots` need, roots included.

    An application not in `app_texts` (an OTP one: kernel, ssl, ...) is not followed.

    Example:
        >>> needed_apps({"rabbit": "{applications, [kernel, rabbit_common]}", "rabbit_common": "",
        ...              "rabbitmq_mqtt": "{applications, [rabbit]}"}, ["rabbit"]) == {"rabbit", "rabbit_common"}
        True
    """
    seen: set[str] = set()
    todo = list(roots)
    for _ in range(10 * len(app_texts) + len(todo)):  # each app is expanded once; bounded anyway
        if not todo:
            break
        app = todo.pop()
        if app in seen or app not in app_texts:
            continue
        seen.add(app)
        for m in _APP_DEPS.finditer(app_texts[app]):
            todo += [a.strip() for a in m.group(1).split(",") if a.strip()]
    return seen


@dataclass(frozen=True, slots=True)
class RabbitMQSchema:
    """What one RabbitMQ knows: the cuttlefish schemas of the applications its node runs, and the
    ``rabbit`` application's environment (``rabbit.app``). Read from the host's package
    (`harness.stack.rabbitmq`) or from the files of the broker's image (`harness.stack.containers`).

    Example:
        >>> RabbitMQSchema("3.10.8", ('{mapping, "consumer_timeout", "rabbit.consumer_timeout", '
        ...                           '[{datatype, integer}]}.',)).check(RabbitMQSettings(conf={"consumer_timout": 1}))
        Traceback (most recent call last):
        ...
        harness.errors.ConfigError: rabbitmq conf: RabbitMQ 3.10.8 has no setting 'consumer_timout' (did you \
mean 'consumer_timeout'?): fix or remove it
    """

    version: str = ""
    schemas: tuple[str, ...] = ()
    rabbit_app: str | None = None

    @classmethod
    def from_files(cls, schema_files: Iterable[Path], app_file: Path | None, version: str = "") -> RabbitMQSchema:
        texts = tuple(path.read_text(errors="replace") for path in schema_files)
        app = app_file.read_text(errors="replace") if app_file is not None and app_file.is_file() else None
        return cls(version, texts, app)

    @classmethod
    def from_tar(cls, fileobj: IO[bytes], roots: Iterable[str] = CORE_APPS) -> RabbitMQSchema:
        """Read from a tar stream of a RabbitMQ plugins directory (or a directory above it), as
        ``docker cp`` / the engine's archive endpoint gives it: the schemas of the applications
        `roots` need. Plugins may be directories (Debian, 3.10+) or ``.ez`` zip archives.

        Example:
            >>> import io, tarfile
            >>> buf = io.BytesIO()
            >>> with tarfile.open(fileobj=buf, mode="w") as tar:
            ...     for name, text in {"plugins/rabbit-3.10.8/ebin/rabbit.app": "{env, [\\n {consumer_timeout, 1}]}",
            ...                        "plugins/rabbit-3.10.8/priv/schema/rabbit.schema": '{mapping, "a", "rabbit.a", []}.',
            ...                        "plugins/rabbitmq_mqtt-3.10.8/priv/schema/rabbitmq_mqtt.schema": "x"}.items():
            ...         info = tarfile.TarInfo(name); info.size = len(text)
            ...         tar.addfile(info, io.BytesIO(text.encode()))
            >>> schema = RabbitMQSchema.from_tar(io.BytesIO(buf.getvalue()))
            >>> schema.version, len(schema.schemas), schema.rabbit_app is not None
            ('3.10.8', 1, True)
        """
        apps: dict[str, str] = {}
        schemas: dict[str, list[str]] = {}
        versions: dict[str, str] = {}

        def wanted(app: str, inner: str) -> bool:
            return inner == f"ebin/{app}.app" or (inner.startswith("priv/schema/") and inner.endswith(".schema"))

        def take(top: str, inner: str, data: bytes) -> None:
            app, _, version = top.rpartition("-")
            text = data.decode("utf-8", "replace")
            if inner.startswith("ebin/"):
                apps[app], versions[app] = text, version
            else:
                schemas.setdefault(app, []).append(text)

        with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
            for member in tar:
                parts = member.name.split("/")
                if "plugins" not in parts or not member.isfile():
                    continue
                rest = parts[len(parts) - parts[::-1].index("plugins"):]  # what follows the last "plugins"
                if not rest or "-" not in rest[0]:
                    continue
                top, inner = rest[0], "/".join(rest[1:])
                if not inner and top.endswith(".ez"):
                    handle = tar.extractfile(member)
                    try:
                        with zipfile.ZipFile(io.BytesIO(handle.read() if handle else b"")) as ez:
                            for name in ez.namelist():
                                ez_top, _, ez_inner = name.partition("/")
                                if "-" in ez_top and wanted(ez_top.rpartition("-")[0], ez_inner):
                                    take(ez_top, ez_inner, ez.read(name))
                    except zipfile.BadZipFile:
                        continue  # not a plugin archive: nothing to learn from it
                elif wanted(top.rpartition("-")[0], inner):
                    handle = tar.extractfile(member)
                    if handle is not None:
                        take(top, inner, handle.read())
        needed = needed_apps(apps, roots) if apps else set()
        texts = tuple(t for app in sorted(needed) for t in schemas.get(app, []))
        return cls(versions.get("rabbit", ""), texts, apps.get("rabbit"))

    def check(self, settings: RabbitMQSettings) -> None:
        """Raise ConfigError naming the first setting this RabbitMQ does not know, or a bad value.

        With no schema (an image laid out differently) the conf is not checked here: a key RabbitMQ
        does not know is then refused at boot, still as one line.
        """
        where = f"RabbitMQ {self.version}".strip()
        mappings = [m for text in self.schemas for m in _mappings_of(text)]
        if mappings:
            for key, value in settings.conf.items():
                found = next((m for m in mappings if m.pattern.match(key)), None)
                if found is None:
                    near = difflib.get_close_matches(key, [m.name for m in mappings], n=1)
                    hint = f"did you mean {near[0]!r}?" if near else "see rabbitmq.com/configure.html"
                    raise ConfigError(f"rabbitmq conf: {where} has no setting {key!r} ({hint}): fix or remove it")
                _check_value(found, key, _render(value))
        if self.rabbit_app is not None and settings.app_env:
            known = _env_keys(self.rabbit_app)
            for key in settings.app_env:
                if known and key not in known:
                    near = difflib.get_close_matches(key, sorted(known), n=1)
                    hint = f"did you mean {near[0]!r}?" if near else "see the rabbit application's environment"
                    raise ConfigError(f"rabbitmq app_env: {where} has no application setting {key!r} ({hint}): "
                                      "fix or remove it")


def validate(settings: RabbitMQSettings, schema_files: Iterable[Path], app_file: Path | None,
             version: str = "") -> None:
    """Raise ConfigError naming the first setting this RabbitMQ does not know, or a bad value.

    Example:
        >>> validate(RabbitMQSettings(), [], None)      # nothing asked, nothing to check
    """
    RabbitMQSchema.from_files(schema_files, app_file, version).check(settings)


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
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def boot_error(log_text: str) -> str | None:
    """The reason RabbitMQ refused its configuration at boot, as one line, or None.

    Example:
        >>> boot_error("Error preparing configuration in phase validation:\\n"
        ...            "  - consumer_timeout invalid, number should be greater or equal to one\\n")
        'consumer_timeout invalid, number should be greater or equal to one'
    """
    log_text = _ANSI.sub("", log_text)  # a container's console log is coloured
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
