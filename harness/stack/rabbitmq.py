"""A private RabbitMQ node for one stack: own node name, ports, credentials and data dir.

Responsibility: start, stop, kill and restart one `rabbitmq-server` node bound to 127.0.0.1
without touching the machine's default node; run `rabbitmqctl` against it.

Why not the Debian wrapper (`/usr/sbin/rabbitmq-server`): as root it re-executes through
`su rabbitmq`, which makes a new session, so the node escapes our process group. We run the
real script as the `rabbitmq` user ourselves, with RABBITMQ_ALLOW_INPUT so the script
`exec`s the VM: the pid we spawn *is* `beam.smp`, and a private `epmd` on its own port is
our child too. Nothing the node starts outlives `stop()`.

Start-up: the node gets a plugins dir of its own, symlinks to only the applications it runs (the
broker's own and, with `management`, the management plugin's; see `plugin_dirs_needed`). With
the whole package's 71 on its code path, RabbitMQ 3.10 spent about 2 s more per boot on this
2-core box looking modules up. ``CHAOS_RABBITMQ_ALL_PLUGINS=1`` gives the node the whole dir.

Example:
    >>> with LocalRabbitMQ() as rabbit:            # doctest: +SKIP
    ...     rabbit.url                              # amqp://chaos-…:…@127.0.0.1:PORT//
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ConfigError, HarnessError, StackStartTimeout
from harness.processes import reaper
from harness.processes.managed import ManagedProcess, free_port
from harness.stack.rabbitmq_config import (
    CORE_APPS,
    RabbitMQSchema,
    RabbitMQSettings,
    apply_policies,
    boot_error,
    merge_conf,
    needed_apps,
)

_INSTALL_HINT = (
    "install it with `sudo apt-get install -y rabbitmq-server` (Debian/Ubuntu), or point "
    "CHAOS_RABBITMQ_SERVER at the rabbitmq-server script"
)


def find_rabbitmq_server(explicit: str | None = None, path: str | None = None) -> Path:
    """The real `rabbitmq-server` script (not the Debian su-wrapper), or a ConfigError naming the fix.

    Example:
        >>> find_rabbitmq_server(path="/nonexistent")      # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        harness.errors.ConfigError: rabbitmq-server is not on PATH: install it with ...
    """
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(f"rabbitmq-server not found at {explicit!r} (from CHAOS_RABBITMQ_SERVER): {_INSTALL_HINT}")
        return p
    found = shutil.which("rabbitmq-server", path=path)
    if found is None:
        raise ConfigError(f"rabbitmq-server is not on PATH: {_INSTALL_HINT}")
    real = Path(found).resolve()
    if real.name == "rabbitmq-server" and (real.parent / "rabbitmq-env").is_file():
        return real
    # Debian's /usr/sbin/rabbitmq-server is a `su` wrapper script; the real one is here:
    debian = Path("/usr/lib/rabbitmq/bin/rabbitmq-server").resolve()
    if debian.name == "rabbitmq-server" and debian.is_file():
        return debian
    raise ConfigError(f"{found} is a wrapper and the real rabbitmq-server script was not found next to it: {_INSTALL_HINT}")


def plugin_dirs_needed(plugins_dir: Path, roots: tuple[str, ...]) -> dict[str, Path] | None:
    """The application directories of `plugins_dir` that `roots` need, from their ``.app`` files.

    None when the layout is not the one expected (no ``rabbit-*`` directory with its ``.app``),
    so the caller keeps the whole directory.

    Why: RabbitMQ 3.10 puts every directory of its plugins dir on the code path (71 in Debian's
    package, most of them optional plugins), and at boot it loads each module of its
    applications by searching that path: a node given only what it runs boots faster.

    Example:
        >>> plugin_dirs_needed(Path("/nonexistent"), ("rabbit",)) is None
        True
    """
    try:
        by_app = {d.name.rsplit("-", 1)[0]: d for d in plugins_dir.iterdir() if d.is_dir() and "-" in d.name}
    except OSError:
        return None
    if "rabbit" not in by_app or not (by_app["rabbit"] / "ebin" / "rabbit.app").is_file():
        return None
    texts: dict[str, str] = {}
    for app, d in by_app.items():
        try:
            texts[app] = (d / "ebin" / f"{app}.app").read_text(errors="replace")
        except OSError:
            if app in roots:
                return None
    return {app: by_app[app] for app in sorted(needed_apps(texts, roots))}


def _app_dirs(server: Path, management: bool) -> dict[str, Path]:
    roots = CORE_APPS + (("rabbitmq_management",) if management else ())
    return plugin_dirs_needed(server.resolve().parent.parent / "plugins", roots) or {}


def installed_schema(server: Path | None = None, management: bool = False) -> RabbitMQSchema:
    """What the installed RabbitMQ knows (`RabbitMQSchema`): the schemas of the applications a node
    of the harness runs (the management plugin's too with `management`).

    A stack checks a scenario's settings with it before any server starts; each node checks again.
    """
    server = server or find_rabbitmq_server(os.environ.get("CHAOS_RABBITMQ_SERVER"))
    apps = _app_dirs(server, management)
    schemas = [f for d in apps.values() for f in sorted((d / "priv" / "schema").glob("*.schema"))]
    rabbit = apps.get("rabbit")
    version = rabbit.name.rsplit("-", 1)[1] if rabbit is not None else ""
    return RabbitMQSchema.from_files(schemas, rabbit / "ebin" / "rabbit.app" if rabbit is not None else None, version)


@dataclass(frozen=True, slots=True)
class RabbitMQConfig:
    """Everything that identifies one node; kept across restarts so data survives."""

    node_name: str
    amqp_port: int
    dist_port: int
    epmd_port: int
    user: str
    password: str
    base_dir: Path

    @property
    def url(self) -> str:
        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.amqp_port}//"


@dataclass(frozen=True, slots=True)
class ClusterMembership:
    """What a node shares with the other members of a cluster (`harness.stack.rabbitmq_cluster`).

    The node then runs no epmd of its own: it registers with the name server at `epmd_port`,
    which the cluster runs. `extra_conf` adds to its rabbitmq.conf (a scenario's own setting of
    the same key replaces the cluster's), `erl_args` to its VM's arguments.
    """

    node_name: str
    epmd_port: int
    user: str
    password: str
    cookie: str
    extra_conf: Mapping[str, str] = field(default_factory=dict)
    erl_args: str = ""
    #: The memory alarm threshold in MB (absolute) instead of the single node's 80 % of RAM:
    #: rabbitmq.conf may hold only one of the two (the relative one wins).
    memory_mb: int | None = None


class LocalRabbitMQ:
    """One private RabbitMQ node. Implements harness.stack.base.ServerControl."""

    name = "rabbitmq"

    def __init__(self, *, startup_timeout: float = 30.0, server_bin: str | None = None,
                 management: bool = False, base_dir: Path | None = None,
                 member: ClusterMembership | None = None, settings: RabbitMQSettings | None = None) -> None:
        self.startup_timeout = startup_timeout
        self._server = find_rabbitmq_server(server_bin or os.environ.get("CHAOS_RABBITMQ_SERVER"))
        self.settings = settings or RabbitMQSettings()
        self.management = management
        self._check_settings()  # before any file is written or process spawned
        self._policies_applied = False
        self._ctl = self._server.parent / "rabbitmqctl"
        self._as_root = os.geteuid() == 0
        self._run_as = "rabbitmq" if self._as_root else None
        if self._as_root:
            try:
                pwd.getpwnam("rabbitmq")
            except KeyError as exc:
                raise ConfigError("running as root needs the `rabbitmq` user: reinstall rabbitmq-server") from exc
        self._own_base = base_dir is None
        base = base_dir or Path(reaper.make_temp_dir("chaos-rabbitmq-"))
        tag = secrets.token_hex(4)
        self.member = member
        self.config = RabbitMQConfig(
            node_name=member.node_name if member else f"chaos-{tag}@localhost",
            amqp_port=free_port(),
            dist_port=free_port(),
            epmd_port=member.epmd_port if member else free_port(),
            user=member.user if member else f"chaos-{tag}",
            password=member.password if member else secrets.token_urlsafe(18),
            base_dir=base,
        )
        self._plugins_dir: Path | None = None
        self._write_files()
        log = base / "logs"
        # A cluster member registers with the cluster's name server instead.
        self._epmd: ManagedProcess | None = None if member else ManagedProcess(
            "epmd", ["epmd", "-port", str(self.config.epmd_port)], log_path=log / "epmd.log", user=self._run_as,
            env=self._env())
        self._node = ManagedProcess("rabbitmq-server", [str(self._server)], log_path=log / "rabbitmq.log",
                                    env=self._env(), cwd=str(base), user=self._run_as, group=self._run_as)

    # -- files and environment ------------------------------------------------
    def _app_dirs(self) -> dict[str, Path]:
        return _app_dirs(self._server, self.management)

    def _check_settings(self) -> None:
        """Reject a scenario's setting this RabbitMQ does not know, before the node is spawned."""
        if self.settings:
            installed_schema(self._server, self.management).check(self.settings)

    def _write_files(self) -> None:
        c = self.config
        (c.base_dir / "logs").mkdir(parents=True, exist_ok=True)
        defaults = {
            "log.console": "true",
            "log.console.level": "warning",
            "log.file": "false",
            # A node on a busy CI box must not raise a memory or disk alarm by itself:
            # alarms are faults the harness injects on purpose.
            "disk_free_limit.absolute": "1MB",
            **({"vm_memory_high_watermark.absolute": f"{self.member.memory_mb}MB"}
               if self.member and self.member.memory_mb else {"vm_memory_high_watermark.relative": "0.8"}),
        }
        # A scenario's own value replaces the harness's default (and a cluster's) rather than
        # following it: one line per key, so what the node runs with is what the file says.
        defaults.update(self.member.extra_conf if self.member else {})
        (c.base_dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{c.amqp_port}\n"
            "distribution.listener.interface = 127.0.0.1\n"
            f"default_user = {c.user}\n"
            f"default_pass = {c.password}\n"
            "default_vhost = /\n"
            + "".join(f"{line}\n" for line in merge_conf(defaults, self.settings))
        )
        advanced = self.settings.advanced_config()
        if advanced is not None:
            (c.base_dir / "advanced.config").write_text(advanced)
        plugins = "[rabbitmq_management]." if self.management else "[]."
        (c.base_dir / "enabled_plugins").write_text(plugins + "\n")
        cookie = c.base_dir / ".erlang.cookie"
        cookie.write_text(self.member.cookie if self.member else secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        (c.base_dir / "inetrc").write_text("{lookup, [file, native]}.\n")
        if self._as_root:
            for root, dirs, files in os.walk(c.base_dir):
                for n in [*dirs, *files]:
                    shutil.chown(os.path.join(root, n), "rabbitmq", "rabbitmq")
            shutil.chown(c.base_dir, "rabbitmq", "rabbitmq")
        # Made after the chown above: chown follows symlinks, and these point into the package.
        self._plugins_dir = self._link_plugins(c.base_dir / "plugins")

    def _link_plugins(self, where: Path) -> Path | None:
        """A plugins dir of symlinks to what this node runs (see `plugin_dirs_needed`), or None."""
        if os.environ.get("CHAOS_RABBITMQ_ALL_PLUGINS") == "1":
            return None
        needed = self._app_dirs()
        if not needed:
            return None
        where.mkdir(mode=0o755)
        for d in needed.values():
            (where / d.name).symlink_to(d, target_is_directory=True)
        return where

    def _env(self) -> dict[str, str]:
        c = self.config
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(c.base_dir),
            RABBITMQ_NODENAME=c.node_name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(c.amqp_port),
            RABBITMQ_DIST_PORT=str(c.dist_port),
            ERL_EPMD_PORT=str(c.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            ERL_INETRC=str(c.base_dir / "inetrc"),
            RABBITMQ_CONFIG_FILE=str(c.base_dir / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(c.base_dir / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(c.base_dir / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(c.base_dir / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(c.base_dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(c.base_dir / "logs"),
            RABBITMQ_PID_FILE=str(c.base_dir / "rabbitmq.pid"),
            RABBITMQ_FEATURE_FLAGS_FILE=str(c.base_dir / "feature_flags"),
            **({"RABBITMQ_PLUGINS_DIR": str(self._plugins_dir)} if self._plugins_dir is not None else {}),
            # exec the VM (pid == beam.smp) and keep it off stdin.
            RABBITMQ_ALLOW_INPUT="1",
            # -noinput: no shell on stdin; +sbwt none: no scheduler busy-waiting, which on a
            # 2-core CI box steals CPU from the workers under test.
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-noinput +sbwt none +sbwtdcpu none +sbwtdio none"
            + (f" {self.member.erl_args}" if self.member and self.member.erl_args else ""),
        )
        return env

    # -- ServerControl ----------------------------------------------------------
    @property
    def url(self) -> str:
        return self.config.url

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.config.amqp_port}"

    @property
    def pids(self) -> list[int]:
        """OS pids of the node and its epmd while they run (for leak checks)."""
        return [p.pid for p in (self._node, self._epmd) if p is not None and p.is_running()]

    def is_running(self) -> bool:
        return self._node.is_running()

    def start(self) -> LocalRabbitMQ:
        """Start the node (same ports, credentials and data as before) and wait until AMQP answers."""
        self.spawn()
        self.await_ready()
        return self

    def spawn(self) -> None:
        """Launch without waiting: a stack spawns all its servers first, then waits for each."""
        if self._epmd is not None and not self._epmd.is_running():
            self._epmd.start()
        self._node.start()

    def await_ready(self) -> None:
        """Wait until AMQP answers, then apply the scenario's policies (once: the node keeps them).

        A node that refused its configuration raises ConfigError with RabbitMQ's reason as one
        line, not the start-up timeout with a log tail.
        """
        try:
            self._node.wait_ready(
                self._probe,
                timeout=self.startup_timeout,
                what=f"an AMQP connection to {self.address} as {self.config.user}",
                hint=("Check that the port is free and that the node can write to "
                      f"{self.config.base_dir} (owned by the rabbitmq user when run as root)."),
            )
        except StackStartTimeout:
            reason = boot_error(self._log_text()) if not self._node.is_running() else None
            if reason is None:
                raise
            raise ConfigError(f"RabbitMQ refused its configuration: {reason}: fix or remove that setting "
                              f"({self.settings.summary()})") from None
        if self.settings.policies and not self._policies_applied:
            apply_policies(self.settings.policies, self.ctl)
            self._policies_applied = True

    def _log_text(self) -> str:
        try:
            return self._node.log_path.read_text(errors="replace")[-20000:]
        except OSError:
            return ""

    def _probe(self) -> None:
        import amqp  # py-amqp ships with kombu

        conn = amqp.Connection(host=self.address, userid=self.config.user, password=self.config.password,
                               virtual_host="/", connect_timeout=1.0)
        try:
            conn.connect()
        finally:
            conn.collect()

    def kill(self) -> None:
        """SIGKILL the node (beam.smp); data on disk stays for start()."""
        self._node.kill()

    def stop(self) -> None:
        """Graceful stop: SIGTERM makes RabbitMQ shut down cleanly, keeping persistent messages."""
        self._node.stop(timeout=30, sig=signal.SIGTERM)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop everything and remove the data dir (when the stack created it)."""
        self._node.stop(timeout=15)
        if self._epmd is not None:
            self._epmd.stop(timeout=5)
        if self._own_base:
            reaper.remove_dir(self.config.base_dir)

    def ctl(self, *args: str, timeout: float = 30.0) -> str:
        """Run `rabbitmqctl -n NODE ARGS…` against this node; raise HarnessError with its output on failure.

        Example: ``rabbit.ctl("set_vm_memory_high_watermark", "0.000001")`` raises a memory alarm.
        """
        argv = [str(self._ctl), "-n", self.config.node_name, *args]
        try:
            r = subprocess.run(argv, env=self._env(), cwd=str(self.config.base_dir), user=self._run_as,
                               capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(f"rabbitmqctl {' '.join(args)} did not answer within {timeout:.0f} s") from exc
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        if r.returncode != 0:
            raise HarnessError(f"rabbitmqctl {' '.join(args)} failed with code {r.returncode}: {out.strip()[-800:]}")
        return out

    def __enter__(self) -> LocalRabbitMQ:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()
