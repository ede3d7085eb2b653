"""The one base root filesystem every local image derives from: Debian packages, no registry.

Responsibility: bootstrap (mmdebstrap, else debootstrap) a minimal Debian root filesystem with rabbitmq-server,
redis-server and python3 from the machine's own Debian mirror, trim it, and keep it as a
tar under the cache directory (default /var/cache/celery-chaos, or CHAOS_IMAGE_CACHE),
keyed by what went into it. Downloaded .debs are cached too, so a rebuild does not fetch
them again. Built once per machine; every image is a small layer on top of it.

Example:
    >>> spec = BaseSpec()
    >>> spec.packages
    ('rabbitmq-server', 'redis-server', 'python3', 'tzdata', 'python3-async-timeout')
    >>> len(spec.key)
    12
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError, HarnessError

#: Bump when the recipe changes in a way the package list does not show (trimming, layout).
RECIPE_VERSION = 1
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_CACHE = Path("/var/cache/celery-chaos")
BASE_PACKAGES = ("rabbitmq-server", "redis-server", "python3", "tzdata",
                 # redis-py imports async_timeout on Python < 3.11.3 (Debian bookworm has 3.11.2)
                 "python3-async-timeout")
# What a container never needs; trimming it keeps the import and every container start fast.
_TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian",
         "var/cache/apt/archives", "var/lib/apt/lists", "var/cache/debconf/templates.dat-old")


def cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory: `explicit`, else CHAOS_IMAGE_CACHE, else /var/cache/celery-chaos."""
    return Path(explicit or os.environ.get("CHAOS_IMAGE_CACHE") or DEFAULT_CACHE)


@dataclass(frozen=True, slots=True)
class BaseSpec:
    """What the base root filesystem is made of; `key` changes whenever its content would."""

    suite: str = "bookworm"
    packages: tuple[str, ...] = BASE_PACKAGES
    variant: str = "minbase"

    @property
    def key(self) -> str:
        text = f"{RECIPE_VERSION}|{self.suite}|{self.variant}|{','.join(sorted(self.packages))}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _sources_files(root: Path) -> Iterable[Path]:
    apt = root / "etc" / "apt"
    if (apt / "sources.list").is_file():
        yield apt / "sources.list"
    d = apt / "sources.list.d"
    if d.is_dir():
        yield from sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources"))


def find_debian_mirror(suite: str = "bookworm", root: Path = Path("/")) -> str:
    """The Debian mirror this machine's apt uses for `suite` (so the build reaches what apt reaches).

    Reads one-line `deb URI SUITE …` entries and deb822 `.sources` stanzas; the CHAOS_DEBIAN_MIRROR
    environment variable wins; falls back to deb.debian.org.
    """
    env = os.environ.get("CHAOS_DEBIAN_MIRROR")
    if env:
        return env.rstrip("/")
    for path in _sources_files(root):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = _deb822(stanza)
                if "deb" in fields.get("types", "").split() and suite in fields.get("suites", "").split():
                    uris = fields.get("uris", "").split()
                    if uris and "security" not in uris[0]:
                        return uris[0].rstrip("/")
        else:
            for line in text.splitlines():
                parts = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(parts) >= 3 and parts[0] == "deb" and parts[2] == suite and "security" not in parts[1]:
                    return parts[1].rstrip("/")
    return DEFAULT_MIRROR


def _deb822(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = ""
    for line in stanza.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] in " \t" and key:
            fields[key] += " " + line.strip()
            continue
        key, _, value = line.partition(":")
        key = key.strip().lower()
        fields[key] = value.strip()
    return fields


def _tool(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def _require_tools() -> str:
    """'mmdebstrap' (fast: one apt run, unsafe-io dpkg) or 'debootstrap' (slower fallback)."""
    if os.geteuid() != 0:
        raise ConfigError("building the base root filesystem needs root (chroot, dpkg): run "
                          "`sudo celery-chaos images build`, or use official images (CHAOS_IMAGES=official)")
    if _tool("mmdebstrap"):
        return "mmdebstrap"
    if _tool("debootstrap"):
        return "debootstrap"
    raise ConfigError("neither mmdebstrap nor debootstrap is installed: `apt-get install -y mmdebstrap eatmydata` "
                      "(or debootstrap), then build again")


def _mmdebstrap_argv(spec: BaseSpec, debs: Path, out: Path, mirror: str) -> list[str]:
    # The .debs are synced in from and out to the cache, so a rebuild downloads nothing again;
    # dpkg skips the docs and fsyncs (a throwaway build root gains nothing from them).
    argv = [
        "mmdebstrap", f"--variant={'essential' if spec.variant == 'minbase' else spec.variant}",
        f"--include={','.join(spec.packages)}", "--format=tar", "--dpkgopt=force-unsafe-io",
        *(f"--dpkgopt=path-exclude=/{rel}/*" for rel in _TRIM if rel.startswith("usr/share")),
        "--skip=download/empty",
        '--setup-hook=mkdir -p "$1"/var/cache/apt/archives/',
        f"--setup-hook=sync-in {debs} /var/cache/apt/archives/",
        f"--customize-hook=sync-out /var/cache/apt/archives {debs}",
        '--customize-hook=rm -f "$1"/var/cache/apt/archives/*.deb; mkdir -p "$1"/data',
        spec.suite, str(out), mirror,
    ]
    if _tool("eatmydata"):
        argv.insert(0, "eatmydata")
    return argv


def base_tar(spec: BaseSpec, *, cache: Path, mirror: str | None = None, force: bool = False,
             timeout: float = 1500.0, log: Callable[[str], None] = print) -> Path:
    """The cached tar of the base root filesystem, built from Debian packages when missing (or `force`)."""
    cache.mkdir(parents=True, exist_ok=True)
    tar = cache / f"base-{spec.key}.tar"
    if tar.is_dir():
        _remove_tree(tar)  # left by an older build that wrote a directory
    if tar.is_file() and not force:
        log(f"base root filesystem: cached at {tar}")
        return tar
    tool = _require_tools()
    mirror = mirror or find_debian_mirror(spec.suite)
    debs = cache / "debs"
    debs.mkdir(exist_ok=True)
    work = cache / f"rootfs-{spec.key}.tmp"
    tmp = cache / f"base-{spec.key}.partial.tar"
    _remove_tree(tmp) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    _remove_tree(work)  # a build interrupted earlier
    logfile = cache / f"{tool}-{spec.key}.log"
    if tool == "mmdebstrap":
        argv = _mmdebstrap_argv(spec, debs, tmp, mirror)
    else:
        argv = ["debootstrap", f"--variant={spec.variant}", f"--include={','.join(spec.packages)}",
                f"--cache-dir={debs}", spec.suite, str(work), mirror]
    log(f"base root filesystem: {tool} {spec.suite} from {mirror} (log: {logfile})")
    env = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin", "DEBIAN_FRONTEND": "noninteractive"}
    t0 = time.monotonic()
    try:
        with open(logfile, "wb") as out:
            # Own session: a timeout or Ctrl-C kills the tool and the dpkg/chroot it runs.
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
            try:
                code = proc.wait(timeout=timeout)
            except BaseException:
                _kill_session(proc)
                raise
        if code != 0:
            raise HarnessError(
                f"{tool} failed with code {code} after {time.monotonic() - t0:.0f} s; "
                f"check that {mirror} is reachable (does `apt-get update` work?) and see {logfile}:\n"
                + _tail(logfile))
        log(f"base root filesystem: {tool} done in {time.monotonic() - t0:.0f} s")
        if tool == "debootstrap":
            _unmount_below(work)
            _trim(work)
            subprocess.run(["tar", "--numeric-owner", "-C", str(work), "-cf", str(tmp), "."], check=True,
                           timeout=600, stdin=subprocess.DEVNULL)
        tmp.replace(tar)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"building the base root filesystem took over {exc.timeout:.0f} s; see {logfile}") from exc
    finally:
        _remove_tree(work)
        _remove_tree(tmp) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    return tar


def _kill_session(proc: subprocess.Popen[bytes]) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout=30)


def _unmount_below(root: Path) -> None:
    # debootstrap mounts /proc and /sys in the target; an interrupted run can leave them mounted,
    # and rmtree must never descend into the host's /proc.
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = str(root.resolve()) + "/"
    targets = sorted((m.split()[1] for m in mounts if len(m.split()) > 1 and m.split()[1].startswith(prefix)),
                     reverse=True)
    for target in targets:
        subprocess.run(["umount", "-l", target], check=False, timeout=30, stdin=subprocess.DEVNULL)


def _remove_tree(root: Path) -> None:
    """rmtree that first unmounts whatever a bootstrap left mounted inside (never recurse into /proc)."""
    if not root.exists():
        return
    _unmount_below(root)
    prefix = str(root.resolve()) + "/"
    try:
        still = [m.split()[1] for m in Path("/proc/mounts").read_text().splitlines()
                 if len(m.split()) > 1 and m.split()[1].startswith(prefix)]
    except OSError:
        still = []
    if still:
        raise HarnessError(f"refusing to remove {root}: still mounted inside it: {still}; unmount them first")
    shutil.rmtree(root, ignore_errors=True)


def _trim(root: Path) -> None:
    for rel in _TRIM:
        p = root / rel
        if p.is_dir():
            for child in p.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
    (root / "data").mkdir(exist_ok=True)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"
