"""The reaper: whatever the harness starts dies with its owner, even when the owner is SIGKILLed.

Responsibility: one small watchdog process per owner process (like testcontainers' Ryuk), tied
to the owner by a pipe. Spawners register each child's process group and each temp dir with it;
when the pipe closes (the owner exited or died, by any signal) the watchdog SIGKILLs every
registered process group and every process that carries the owner's token in its environment,
then removes the registered dirs.

Why a token in the environment: children inherit it through any number of forks, sessions and
user switches (a RabbitMQ node started as the rabbitmq user, its own `epmd -daemon`, the pool
children of a worker the fault thread restarted), so the watchdog finds them all without
trusting pids that the kernel may have reused. Why not PR_SET_PDEATHSIG: it follows the *thread*
that spawned the child, so children started from the fault thread outlived the owner.

A marker file per owner (under `state_dir()`) lists the token, dirs and pids, so
`celery-chaos stack down --orphans` and the next stack start can clean up when the owner and its
watchdog both died.

Example:
    >>> import os, tempfile
    >>> d = make_temp_dir("chaos-doc-")              # removed when this process exits, at the latest
    >>> os.path.isdir(d)
    True
    >>> remove_dir(d); os.path.isdir(d)
    False
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

TOKEN_VAR = "CHAOS_REAPER_TOKEN"

_lock = threading.Lock()


@dataclass
class _Owner:
    pid: int
    token: str
    write_fd: int
    watchdog: subprocess.Popen[bytes]
    dirs: set[str] = field(default_factory=set)


_owner: _Owner | None = None


def state_dir() -> Path:
    """Per-user directory of owner marker files (CHAOS_STATE_DIR overrides it)."""
    explicit = os.environ.get("CHAOS_STATE_DIR")
    return Path(explicit) if explicit else Path("/tmp") / f"celery-chaos-state-{os.getuid()}"


def _start_time(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot), None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if not fields or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _pgid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().decode("ascii", "replace").rpartition(")")[2].split()[2])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, start: int | None) -> bool:
    now = _start_time(pid)
    return now is not None and (start is None or now == start)


def _token_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            env = fh.read()
    except OSError:
        return None
    key = TOKEN_VAR.encode() + b"="
    for item in env.split(b"\0"):
        if item.startswith(key):
            return item[len(key):].decode("ascii", "replace")
    return None


def _all_pids() -> list[int]:
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def owner_of(token: str) -> tuple[int, int | None]:
    """(pid, start time) of the owner a token belongs to (the token starts with them)."""
    pid, _, rest = token.partition("-")
    start, _, _ = rest.partition("-")
    try:
        return int(pid), int(start)
    except ValueError:
        return -1, None


def kill_tokened(tokens: Iterable[str], *, exclude: Iterable[int] = (), timeout: float = 5.0) -> list[int]:
    """SIGKILL every process whose environment carries one of `tokens`; wait until they are gone."""
    wanted = set(tokens)
    skip = {os.getpid(), *exclude}
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    # A few rounds: a dying worker's main process may fork a pool child between two scans.
    for _ in range(5):
        found = [p for p in _all_pids() if p not in skip and _token_of(p) in wanted]
        for p in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGKILL)
            killed.add(p)
        if not found or time.monotonic() > deadline:
            break
        while time.monotonic() < deadline and any(_start_time(p) is not None for p in found):
            time.sleep(0.02)
    return sorted(killed)


def _kill_groups(groups: Iterable[int], token: str) -> None:
    for g in groups:
        # Only a group that still holds a process of ours: its number may belong to someone else now.
        members = [p for p in _all_pids() if _pgid(p) == g]
        if any(_token_of(p) == token for p in members):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(g, signal.SIGKILL)


# -- the watchdog process ----------------------------------------------------------------------
def _write_marker(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)


def watch(owner_pid: int, token: str) -> int:
    """The watchdog's main loop: read registrations from stdin until EOF, then reap. Returns 0."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the owner's Ctrl-C or SIGTERM must not take its reaper
    groups: set[int] = set()
    dirs: set[str] = set()
    sdir = state_dir()
    with contextlib.suppress(OSError):
        sdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    marker = sdir / f"owner-{owner_pid}-{os.getpid()}.json"
    me = os.getpid()
    base = {"owner_pid": owner_pid, "token": token, "reaper_pid": me, "reaper_start": _start_time(me)}
    _write_marker(marker, {**base, "groups": [], "dirs": []})
    stdin = sys.stdin.buffer
    for raw in stdin:
        verb, _, arg = raw.decode("utf-8", "surrogateescape").rstrip("\n").partition(" ")
        if verb == "group":
            groups.add(int(arg))
        elif verb == "ungroup":
            groups.discard(int(arg))
        elif verb == "dir":
            dirs.add(arg)
        elif verb == "undir":
            dirs.discard(arg)
        else:
            continue
        _write_marker(marker, {**base, "groups": sorted(groups), "dirs": sorted(dirs)})
    _kill_groups(groups, token)
    kill_tokened([token], exclude=[owner_pid])
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    with contextlib.suppress(OSError):
        marker.unlink()
    return 0


# -- the owner's side --------------------------------------------------------------------------
def _send(line: str) -> None:
    owner = _ensure()
    if owner is None:
        return
    with _lock, contextlib.suppress(OSError):
        os.write(owner.write_fd, (line + "\n").encode("utf-8", "surrogateescape"))


def _ensure() -> _Owner | None:
    """The watchdog of this process, started at the first call (again in a forked child)."""
    global _owner
    with _lock:
        if _owner is not None and _owner.pid == os.getpid():
            return _owner
        if os.environ.get("CHAOS_REAPER") == "off":
            return None
        pid = os.getpid()
        # The pid and start time in the token let `stack down --orphans` tell whose it is.
        token = f"{pid}-{_start_time(pid)}-{secrets.token_hex(6)}"
        read_fd, write_fd = os.pipe()
        env = {k: v for k, v in os.environ.items() if k != TOKEN_VAR}
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join([root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "harness.processes.reaper", "--watch", str(pid), token],
                stdin=read_fd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                start_new_session=True,  # out of the terminal's process group: Ctrl-C is for the owner
            )
        finally:
            os.close(read_fd)
        # The write end is close-on-exec (os.pipe's default), so only the owner holds it:
        # it closes exactly when the owner's process ends.
        _owner = _Owner(pid, token, write_fd, proc)
        os.environ[TOKEN_VAR] = token
    return _owner


def ensure_started() -> str | None:
    """Start this process's watchdog (once) and return the token children must carry.

    The first call also reaps what owners that died earlier left behind (see `reap_orphans`).
    """
    first = _owner is None or _owner.pid != os.getpid()
    if first:
        with contextlib.suppress(Exception):
            reap_orphans()
    owner = _ensure()
    return None if owner is None else owner.token


def child_env(env: dict[str, str] | None) -> dict[str, str]:
    """`env` (or os.environ) with this owner's token, for a child the reaper must find."""
    out = dict(os.environ if env is None else env)
    token = ensure_started()
    if token:
        out[TOKEN_VAR] = token
    return out


def register_group(pgid: int) -> None:
    """Kill process group `pgid` when the owner dies (until `unregister_group`)."""
    _send(f"group {pgid}")


def unregister_group(pgid: int) -> None:
    """The group is gone (reaped by its spawner): its number may be reused, so forget it."""
    if _owner is not None and _owner.pid == os.getpid():
        _send(f"ungroup {pgid}")


def make_temp_dir(prefix: str) -> str:
    """`tempfile.mkdtemp(prefix=...)` that the reaper removes if the owner dies before `remove_dir`."""
    ensure_started()
    d = tempfile.mkdtemp(prefix=prefix)
    _send(f"dir {d}")
    return d


def remove_dir(path: str | Path) -> None:
    """Remove a temp dir and tell the reaper it is gone."""
    shutil.rmtree(path, ignore_errors=True)
    if _owner is not None and _owner.pid == os.getpid():
        _send(f"undir {path}")


@dataclass
class Reaped:
    """What `reap_orphans` cleaned up."""

    owners: list[int] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)


def reap_orphans() -> Reaped:
    """Kill the processes and remove the temp dirs of owners that are dead (and whose watchdog is too).

    Example: ``celery-chaos stack down --orphans`` prints what this found.
    """
    out = Reaped()
    dead_tokens: set[str] = set()
    markers = sorted(state_dir().glob("owner-*.json")) if state_dir().is_dir() else []
    for m in markers:
        try:
            data = json.loads(m.read_text())
            token = str(data["token"])
        except (OSError, ValueError, KeyError):
            continue
        if _alive(*owner_of(token)):
            continue
        if _alive(int(data.get("reaper_pid", -1)), data.get("reaper_start")):
            continue  # its watchdog is reaping it right now
        dead_tokens.add(token)
        out.owners.append(owner_of(token)[0])
        for d in data.get("dirs", []):
            if os.path.isdir(d):
                out.dirs.append(d)
    # Processes of a dead owner that left no marker (owner and watchdog killed together).
    own = _owner.token if _owner is not None else None
    for p in _all_pids():
        t = _token_of(p)
        if t and t != own and t not in dead_tokens and not _alive(*owner_of(t)):
            dead_tokens.add(t)
            out.owners.append(owner_of(t)[0])
    if dead_tokens:
        out.pids = kill_tokened(dead_tokens)
    for d in out.dirs:
        shutil.rmtree(d, ignore_errors=True)
    for m in markers:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if json.loads(m.read_text())["token"] in dead_tokens:
                m.unlink()
    out.owners = sorted(set(out.owners))
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 3 and args[0] == "--watch":
        return watch(int(args[1]), args[2])
    print("usage: python -m harness.processes.reaper --watch OWNER_PID TOKEN (started by the harness itself)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
