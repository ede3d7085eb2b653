"""Pure parts of harness.images and the containers stack options: no Docker needed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.images import build as build_mod
from harness.images.engine import _split_tag, docker_status
from harness.images.names import ImageMode, ImageOverrides, Service
from harness.images.rootfs import BaseSpec, find_debian_mirror
from harness.stack.containers import ContainerStackOptions

REPO = Path(__file__).resolve().parents[2]


def test_every_service_has_an_official_image_a_local_tag_and_an_env_override():
    for s in Service:
        assert s.official and ":" in s.official
        assert s.local == f"chaos/{s.value}:local"
        assert s.env_var == f"CHAOS_{s.value.upper()}_IMAGE"
    assert Service.TOXIPROXY.official.startswith("ghcr.io/shopify/toxiproxy:")
    assert "management" in Service.RABBITMQ.official


def test_image_mode_names_the_choices_on_a_typo():
    assert ImageMode.parse(" Local ") is ImageMode.LOCAL
    with pytest.raises(ConfigError, match="auto, official, local"):
        ImageMode.parse("offline")


def test_overrides_come_from_options_then_environment():
    assert ContainerStackOptions().proxy_network == "host"
    env = {"CHAOS_REDIS_IMAGE": "redis:7.2", "CHAOS_IMAGES": "local", "CHAOS_PROXY_NETWORK": "bridge"}
    o = ContainerStackOptions.from_env(env, toxiproxy_image="my/toxiproxy:1")
    assert (o.images, o.proxy_network) == ("local", "bridge")
    assert o.overrides == ImageOverrides(redis="redis:7.2", toxiproxy="my/toxiproxy:1")
    # An explicit option beats the environment.
    assert ContainerStackOptions.from_env(env, redis_image="redis:6").redis_image == "redis:6"
    assert ImageOverrides(redis="a").merged(ImageOverrides(redis="b", python="p")) == ImageOverrides(redis="a",
                                                                                                     python="p")


@pytest.mark.parametrize(("given", "match"), [
    ({"image": "redis"}, "unknown containers stack option"),
    ({"broker": "kafka"}, "broker must be"),
    ({"proxy_network": "overlay"}, "proxy_network must be"),
    ({"workers": "k8s"}, "workers must be"),
    ({"images": "offline"}, "auto, official, local"),
    ({"spare_proxies": 500}, "spare_proxies"),
])
def test_bad_options_fail_when_built_with_the_fix(given, match):
    with pytest.raises(ConfigError, match=match):
        ContainerStackOptions.from_env({}, **given)


def test_split_tag_handles_registries_with_ports():
    assert _split_tag("ghcr.io/shopify/toxiproxy:2.12.0") == ("ghcr.io/shopify/toxiproxy", "2.12.0")
    assert _split_tag("localhost:5000/redis") == ("localhost:5000/redis", "latest")
    assert _split_tag("redis") == ("redis", "latest")


def test_docker_status_explains_an_unreachable_daemon(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    status = docker_status(timeout=2)
    assert not status.usable
    assert "does not answer" in status.reason and "--stack=local" in status.reason


def test_debian_mirror_is_read_from_deb822_and_one_line_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("CHAOS_DEBIAN_MIRROR", raising=False)
    d = tmp_path / "etc" / "apt" / "sources.list.d"
    d.mkdir(parents=True)
    (d / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n")
    assert find_debian_mirror("bookworm", root=tmp_path) == "http://mirror.example/debian"
    (d / "debian.sources").unlink()
    (tmp_path / "etc" / "apt" / "sources.list").write_text(
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb [arch=amd64] http://one.example/debian/ bookworm main\n")
    assert find_debian_mirror("bookworm", root=tmp_path) == "http://one.example/debian"
    assert find_debian_mirror("trixie", root=tmp_path) == "http://deb.debian.org/debian"
    monkeypatch.setenv("CHAOS_DEBIAN_MIRROR", "http://env.example/debian/")
    assert find_debian_mirror("bookworm", root=tmp_path) == "http://env.example/debian"


def test_base_key_follows_the_package_list_only():
    assert BaseSpec().key == BaseSpec().key
    assert BaseSpec(packages=("redis-server",)).key != BaseSpec().key
    assert "rabbitmq-server" in BaseSpec().packages and "python3" in BaseSpec().packages


def test_build_context_digest_is_stable_and_tracks_content():
    ctx1, d1 = build_mod._context(Service.TOXIPROXY, "chaos/base:k1")
    ctx2, d2 = build_mod._context(Service.TOXIPROXY, "chaos/base:k1")
    assert (ctx1, d1) == (ctx2, d2)
    assert build_mod._context(Service.TOXIPROXY, "chaos/base:k2")[1] != d1
    # The toxiproxy image carries the server package and the entry point, nothing of the rest of harness.
    import io
    import tarfile

    names = tarfile.open(fileobj=io.BytesIO(ctx1)).getnames()
    assert "opt/celery-chaos/harness/toxiproxy/server.py" in names
    assert "opt/celery-chaos/toxiproxy_entry.py" in names
    assert not any("harness/stack" in n for n in names)


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="needs the system python3 (Debian's)")
def test_toxiproxy_entry_relays_bytes_on_the_system_python(tmp_path):
    """The image's server runs on Debian's python3 (3.11.2 on bookworm), where asyncio needs the backport."""
    import socket

    from harness.processes.managed import free_port
    from harness.toxiproxy.client import ToxiproxyClient

    echo = socket.socket()
    echo.bind(("127.0.0.1", 0))
    echo.listen(4)
    api = free_port()
    pkg = tmp_path / "pkg"
    shutil.copytree(REPO / "harness" / "toxiproxy", pkg / "harness" / "toxiproxy")
    (pkg / "harness" / "__init__.py").write_text("")
    shutil.copy(REPO / "harness" / "images" / "toxiproxy_entry.py", pkg / "toxiproxy_entry.py")
    proc = subprocess.Popen(["/usr/bin/python3", "-m", "toxiproxy_entry", "-host=127.0.0.1", f"-port={api}"],
                            cwd=pkg, env={"PYTHONPATH": str(pkg), "PATH": "/usr/bin:/bin"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        client = ToxiproxyClient(f"http://127.0.0.1:{api}")
        client.wait_ready(timeout=15)
        info = client.create_proxy("echo", f"127.0.0.1:{echo.getsockname()[1]}", listen="127.0.0.1:0")
        echo.settimeout(5)
        for i in range(3):  # the first bytes of every new connection must arrive
            with socket.create_connection(("127.0.0.1", info.listen_port), timeout=5) as c:
                c.sendall(f"hello {i}".encode())
                server_side, _ = echo.accept()
                with server_side:
                    server_side.settimeout(5)
                    assert server_side.recv(64) == f"hello {i}".encode()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        echo.close()


@pytest.mark.parametrize(("ci", "outcome"), [("true", "failed"), ("", "skipped")])
def test_the_tier_fails_in_ci_and_skips_elsewhere_without_docker(tmp_path, ci, outcome):
    import os

    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock", "CI": ci}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs",
                        "tests/containers/test_container_stack.py::test_urls_use_the_stacks_own_credentials_on_loopback"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    if outcome == "failed":
        assert r.returncode == 1, out
        assert "CI=true but the containers tier cannot run" in out and "does not answer" in out
    else:
        assert r.returncode == 0, out
        assert "1 skipped" in out and "containers tier skipped (not CI)" in out
