"""Talking to the Docker engine: is it usable, bounded pulls, and exact cleanup by label.

Responsibility: one place that opens Docker clients with timeouts, says why Docker cannot be
used (no CLI, no daemon, no permission), pulls an image within a deadline, and lists or
removes exactly the containers, networks and volumes of one run (by the `celery-chaos.run`
label), so nothing of another run or of the user's is touched.

Example:
    >>> status = docker_status()                     # doctest: +SKIP
    >>> status.usable, status.reason                 # doctest: +SKIP
    (False, 'the Docker daemon does not answer at unix:///var/run/docker.sock: ...')
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError
from harness.images.names import LABEL_OWNER_HOST, LABEL_OWNER_PID, LABEL_OWNER_START, LABEL_RUN


class DockerUnavailable(HarnessError):
    """Docker cannot be used here; the message says why and how to fix it."""


@dataclass(frozen=True, slots=True)
class DockerStatus:
    """Whether the Docker engine answers, and if not, why (in words a user can act on)."""

    usable: bool
    reason: str = ""
    server_version: str = ""


_START_HINT = ("start it (as root: `dockerd >/tmp/dockerd.log 2>&1 &`, or `systemctl start docker`), "
               "or run with --stack=local")


def docker_client(timeout: float = 60.0) -> Any:
    """A docker SDK client from the environment (DOCKER_HOST or the default socket); every call times out.

    Raises DockerUnavailable (with the fix) when the SDK is missing or the daemon does not answer.
    """
    try:
        import docker
    except ImportError as exc:
        raise DockerUnavailable(
            "the docker Python package is missing: `pip install docker` (it comes with testcontainers)") from exc
    try:
        client = docker.from_env(timeout=int(max(1, timeout)))
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure here means "no usable daemon"
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise DockerUnavailable(f"the Docker daemon does not answer at {where}: {exc}; {_START_HINT}") from exc
    return client


def docker_status(timeout: float = 5.0) -> DockerStatus:
    """Probe the engine without raising: usable or not, and the reason."""
    try:
        client = docker_client(timeout=timeout)
    except DockerUnavailable as exc:
        return DockerStatus(False, str(exc))
    try:
        version = str(client.version().get("Version", ""))
    except Exception as exc:  # noqa: BLE001
        return DockerStatus(False, f"the Docker daemon answered ping but not version: {exc}")
    finally:
        client.close()
    return DockerStatus(True, "", version)


def image_present(client: Any, image: str) -> bool:
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def pull_image(image: str, timeout: float) -> str:
    """Pull `image` within `timeout` seconds; return "" on success, else the reason it failed.

    A registry that cannot be reached either fails fast (DNS) or hangs (a firewall that drops
    packets): the pull runs on its own client with a socket timeout, in a thread we stop
    waiting for at the deadline, so a hung registry costs at most `timeout` seconds.
    """
    result: list[str] = []

    def _pull() -> None:
        try:
            client = docker_client(timeout=timeout)
        except DockerUnavailable as exc:
            result.append(str(exc))
            return
        try:
            repo, tag = _split_tag(image)
            client.images.pull(repo, tag=tag)
            result.append("")
        except Exception as exc:  # noqa: BLE001 - the reason is reported, not raised
            result.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()

    thread = threading.Thread(target=_pull, name=f"pull {image}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return f"no answer from the registry within {timeout:.0f} s"
    return result[0] if result else "the pull thread ended without a result"


def _split_tag(image: str) -> tuple[str, str]:
    """('ghcr.io/shopify/toxiproxy', '2.12.0') from 'ghcr.io/shopify/toxiproxy:2.12.0'; tag 'latest' if none.

    Example:
        >>> _split_tag("localhost:5000/redis")
        ('localhost:5000/redis', 'latest')
    """
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return name, tag


def run_filter(run_id: str) -> dict[str, list[str]]:
    return {"label": [f"{LABEL_RUN}={run_id}"]}


def leftovers(client: Any, run_id: str) -> dict[str, list[str]]:
    """Names of the containers, networks and volumes still labelled with `run_id` (empty lists: clean)."""
    flt = run_filter(run_id)
    return {
        "containers": [c.name for c in client.containers.list(all=True, filters=flt)],
        "networks": [n.name for n in client.networks.list(filters=flt)],
        "volumes": [v.name for v in client.volumes.list(filters=flt)],
    }


def remove_run(client: Any, run_id: str) -> list[str]:
    """Force-remove every container, then network and volume labelled with `run_id`; return problems."""
    problems: list[str] = []
    flt = run_filter(run_id)
    for c in client.containers.list(all=True, filters=flt):
        try:
            if c.status == "paused":
                c.unpause()
            c.remove(force=True, v=True)
        except Exception as exc:  # noqa: BLE001 - keep removing the rest
            if "No such container" not in str(exc) and "already in progress" not in str(exc):
                problems.append(f"container {c.name}: {exc}")
    for n in client.networks.list(filters=flt):
        try:
            n.remove()
        except Exception as exc:  # noqa: BLE001
            problems.append(f"network {n.name}: {exc}")
    for v in client.volumes.list(filters=flt):
        try:
            v.remove(force=True)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"volume {v.name}: {exc}")
    return problems


def owner_labels() -> dict[str, str]:
    """Labels naming this process as the owner of a run (see `remove_orphans`)."""
    import psutil

    return {LABEL_OWNER_PID: str(os.getpid()), LABEL_OWNER_START: f"{psutil.Process().create_time():.2f}",
            LABEL_OWNER_HOST: socket.gethostname()}


def _owner_alive(labels: dict[str, str]) -> bool:
    import psutil

    if labels.get(LABEL_OWNER_HOST) != socket.gethostname():
        return True  # another machine's run (a shared DOCKER_HOST): its pids mean nothing here
    try:
        pid = int(labels.get(LABEL_OWNER_PID, ""))
        started = float(labels.get(LABEL_OWNER_START, ""))
    except ValueError:
        return True  # not ours to judge: no owner labels
    try:
        return abs(psutil.Process(pid).create_time() - started) < 0.5
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def remove_orphans(client: Any) -> list[str]:
    """Remove runs whose owning process on this machine is gone (killed before it could clean up).

    The safety net testcontainers' Ryuk container would give, without an image from a registry.
    Returns the run ids removed.
    """
    orphans: set[str] = set()
    for c in client.containers.list(all=True, filters={"label": [LABEL_RUN, LABEL_OWNER_PID]}):
        labels = c.labels or {}
        if not _owner_alive(labels):
            orphans.add(labels[LABEL_RUN])
    for run_id in sorted(orphans):
        remove_run(client, run_id)
    return sorted(orphans)
