"""`celery-chaos images build`: registry-free equivalents of the official images.

Responsibility: import the cached base root filesystem once (chaos/base:<key>, also tagged
chaos/base:local) and derive one small image per service from it with the engine's classic
builder (no registry, no RUN step, no BuildKit):

  chaos/rabbitmq:local   Debian's rabbitmq-server with the management plugin; honours
                         RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS like the official image
  chaos/redis:local      Debian's redis-server; the same command line as the official image
  chaos/toxiproxy:local  the harness's built-in Toxiproxy server on Debian's python3; the same
                         flags as ghcr.io/shopify/toxiproxy (-host, -port, -config)
  chaos/python:local     Debian's python3 for workers in containers (the host venv is mounted)

A derived image is rebuilt only when its content (Dockerfile, scripts, the toxiproxy
package) or the base changed, so a second build takes seconds.

Example:
    >>> report = build_images()                         # doctest: +SKIP
    >>> report.images[Service.REDIS]                    # doctest: +SKIP
    'chaos/redis:local'
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.images.engine import docker_client, image_present
from harness.images.names import LABEL_BASE_KEY, LABEL_PROJECT, Service
from harness.images.rootfs import BaseSpec, base_tar, cache_dir

LABEL_CONTEXT = "celery-chaos.context"
_HARNESS = Path(__file__).resolve().parents[1]

# The rabbitmq entrypoint writes the config the official image derives from the same variables.
_RABBITMQ_ENTRYPOINT = r"""#!/bin/sh
# chaos/rabbitmq:local entrypoint: the official image's interface on Debian's rabbitmq-server.
set -eu
if [ "${1:-}" != "rabbitmq-server" ]; then exec "$@"; fi
user="${RABBITMQ_DEFAULT_USER:-guest}"
pass="${RABBITMQ_DEFAULT_PASS:-guest}"
vhost="${RABBITMQ_DEFAULT_VHOST:-/}"
mkdir -p /etc/rabbitmq
cat > /etc/rabbitmq/rabbitmq.conf <<EOF
listeners.tcp.default = 5672
default_user = $user
default_pass = $pass
default_vhost = $vhost
loopback_users.guest = false
log.console = true
log.console.level = info
log.file = false
disk_free_limit.absolute = 1MB
management.tcp.port = 15672
EOF
if [ "${CHAOS_RABBITMQ_MANAGEMENT:-1}" = "1" ]; then
  echo '[rabbitmq_management].' > /etc/rabbitmq/enabled_plugins
else
  echo '[].' > /etc/rabbitmq/enabled_plugins
fi
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /etc/rabbitmq
export HOME=/var/lib/rabbitmq
# exec the VM itself (pid 1's child under --init), as the rabbitmq user, off stdin.
export RABBITMQ_ALLOW_INPUT=1 RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-noinput
exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server
"""

# Like the official image: flags alone mean redis-server; with no config, protected mode is off
# (the container is reachable only on its own network and the ports the stack publishes).
_REDIS_ENTRYPOINT = r"""#!/bin/sh
set -eu
if [ "${1#-}" != "${1:-}" ]; then set -- redis-server "$@"; fi
if [ "${1:-}" = "redis-server" ]; then
  case " $* " in *" --protected-mode "*) ;; *) set -- "$@" --protected-mode no ;; esac
fi
exec "$@"
"""

_DOCKERFILES: dict[Service, str] = {
    Service.RABBITMQ: """FROM {base}
COPY chaos-rabbitmq /usr/local/bin/chaos-rabbitmq
EXPOSE 5672 15672
ENTRYPOINT ["/usr/local/bin/chaos-rabbitmq"]
CMD ["rabbitmq-server"]
""",
    Service.REDIS: """FROM {base}
COPY chaos-redis /usr/local/bin/chaos-redis
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/chaos-redis"]
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data"]
""",
    Service.TOXIPROXY: """FROM {base}
COPY opt /opt
ENV PYTHONPATH=/opt/celery-chaos PYTHONDONTWRITEBYTECODE=1
EXPOSE 8474
ENTRYPOINT ["python3", "-m", "toxiproxy_entry"]
CMD ["-host=0.0.0.0", "-port=8474"]
""",
    Service.PYTHON: """FROM {base}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
CMD ["python3"]
""",
}


@dataclass(frozen=True, slots=True)
class BuildReport:
    """What `build_images` made and how long each step took (seconds)."""

    base_image: str
    base_key: str
    images: dict[Service, str]
    seconds: dict[str, float] = field(default_factory=dict)
    rebuilt: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"base_image": self.base_image, "base_key": self.base_key,
                "images": {s.value: tag for s, tag in self.images.items()},
                "seconds": {k: round(v, 2) for k, v in self.seconds.items()}, "rebuilt": list(self.rebuilt)}


def _context_files(service: Service) -> dict[str, tuple[bytes, int]]:
    """Build-context files (path -> (content, mode)) besides the Dockerfile."""
    if service is Service.RABBITMQ:
        return {"chaos-rabbitmq": (_RABBITMQ_ENTRYPOINT.encode(), 0o755)}
    if service is Service.REDIS:
        return {"chaos-redis": (_REDIS_ENTRYPOINT.encode(), 0o755)}
    if service is Service.TOXIPROXY:
        # Our own standard-library server: the package, plus an empty `harness` package around it.
        files = {"opt/celery-chaos/harness/__init__.py": (b"", 0o644),
                 "opt/celery-chaos/toxiproxy_entry.py": ((_HARNESS / "images" / "toxiproxy_entry.py").read_bytes(),
                                                          0o644)}
        for src in sorted((_HARNESS / "toxiproxy").glob("*.py")):
            files[f"opt/celery-chaos/harness/toxiproxy/{src.name}"] = (src.read_bytes(), 0o644)
        return files
    return {}


def _context(service: Service, base: str) -> tuple[bytes, str]:
    """The build context as an uncompressed tar, and a digest of its content (for rebuild decisions)."""
    files = {"Dockerfile": (_DOCKERFILES[service].format(base=base).encode(), 0o644), **_context_files(service)}
    digest = hashlib.sha256()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in sorted(files):
            data, mode = files[name]
            digest.update(name.encode() + b"\0" + str(mode).encode() + b"\0" + data + b"\0")
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), digest.hexdigest()[:16]


def _import_base(client: Any, tar: Path, spec: BaseSpec, log: Callable[[str], None]) -> None:
    # The docker CLI streams the tar to the engine; the SDK's streamed import is refused by some
    # engines ("header line too long"), and reading 250 MB into memory is no better.
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        raise HarnessError("the docker command is not on PATH: install docker.io (or docker-ce-cli) to import "
                           f"{tar}")
    tag = f"chaos/base:{spec.key}"
    log(f"importing {tar} as {tag}")
    r = subprocess.run([docker_cli, "import", "--change", f"LABEL {LABEL_PROJECT}=base {LABEL_BASE_KEY}={spec.key}",
                        "--change", 'CMD ["/bin/bash"]', str(tar), tag],
                       capture_output=True, timeout=600, stdin=subprocess.DEVNULL)
    if r.returncode != 0 or not image_present(client, tag):
        raise HarnessError(f"docker import of {tar} failed (code {r.returncode}): "
                           f"{(r.stdout + r.stderr).decode('utf-8', 'replace').strip()[-800:]}")


def _build(client: Any, service: Service, base: str, key: str, log: Callable[[str], None]) -> bool:
    """Build one derived image unless an identical one exists; True when it was (re)built."""
    context, digest = _context(service, base)
    try:
        current = client.images.get(service.local).labels or {}
    except Exception:  # noqa: BLE001 - missing image
        current = {}
    if current.get(LABEL_CONTEXT) == digest and current.get(LABEL_BASE_KEY) == key:
        log(f"{service.local}: up to date")
        return False
    log(f"{service.local}: building from {base}")
    labels = {LABEL_PROJECT: service.value, LABEL_BASE_KEY: key, LABEL_CONTEXT: digest}
    stream = client.api.build(fileobj=io.BytesIO(context), custom_context=True, tag=service.local, rm=True,
                              forcerm=True, pull=False, labels=labels, decode=True, timeout=300)
    lines: list[str] = []
    for chunk in stream:
        if "error" in chunk:
            raise HarnessError(f"building {service.local} failed: {chunk['error']}\n" + "".join(lines[-20:]))
        if "stream" in chunk:
            lines.append(chunk["stream"])
    if not image_present(client, service.local):
        raise HarnessError(f"building {service.local} produced no image:\n" + "".join(lines[-20:]))
    return True


def _prune(client: Any, spec: BaseSpec, cache: Path, log: Callable[[str], None]) -> None:
    """Drop base images and cached tars of older recipes (each is a few hundred MB)."""
    for image in client.images.list(name="chaos/base", filters={"label": f"{LABEL_PROJECT}=base"}):
        if (image.labels or {}).get(LABEL_BASE_KEY) == spec.key:
            continue
        for tag in image.tags:
            try:
                client.images.remove(tag)
                log(f"removed old base image {tag}")
            except Exception:  # noqa: BLE001 - still used by a container or an image: keep it
                pass
    try:
        # Images replaced by a rebuild are left untagged; only ours (by label) are pruned.
        client.images.prune(filters={"dangling": True, "label": LABEL_PROJECT})
    except Exception:  # noqa: BLE001 - pruning is housekeeping, never a build failure
        pass
    for old in cache.glob("base-*.tar"):
        if old.name != f"base-{spec.key}.tar":
            old.unlink(missing_ok=True)


def build_images(
    services: Iterable[Service] = tuple(Service),
    *,
    cache: str | Path | None = None,
    mirror: str | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> BuildReport:
    """Build (or reuse) the base image and the derived images for `services`; return what was made.

    `force` rebuilds the base root filesystem from Debian packages even when it is cached.
    """
    t0 = time.monotonic()
    spec = BaseSpec()
    seconds: dict[str, float] = {}
    rebuilt: list[str] = []
    client = docker_client(timeout=600)
    try:
        base = f"chaos/base:{spec.key}"
        if force or not image_present(client, base):
            tar = base_tar(spec, cache=cache_dir(cache), mirror=mirror, force=force, log=log)
            seconds["rootfs"] = time.monotonic() - t0
            t1 = time.monotonic()
            _import_base(client, tar, spec, log)
            seconds["import"] = time.monotonic() - t1
            rebuilt.append(base)
        else:
            log(f"{base}: present")
        client.images.get(base).tag("chaos/base", "local")
        t2 = time.monotonic()
        images: dict[Service, str] = {}
        for service in services:
            if _build(client, service, base, spec.key, log):
                rebuilt.append(service.local)
            images[service] = service.local
        seconds["derive"] = time.monotonic() - t2
        _prune(client, spec, cache_dir(cache), log)
    finally:
        client.close()
    seconds["total"] = time.monotonic() - t0
    return BuildReport(base, spec.key, images, seconds, tuple(rebuilt))
