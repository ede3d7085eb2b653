"""The server as a process (flags, -config, signals) and the harness client's contract (deadlines, ints)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tp_util import EchoServer

from harness.errors import ConfigError, HarnessError, StackStartTimeout
from harness.toxiproxy.client import ProxyInfo, ToxiproxyClient, ToxiproxyError, int_attributes, split_listen
from harness.toxiproxy.process import ToxiproxyProcess, free_port

PY = [sys.executable, "-m", "harness.toxiproxy"]


def run_server(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(PY + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def reap(proc: subprocess.Popen[bytes]) -> bytes:
    """Kill if still running, wait, and return everything it printed on stdout."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=10)
    return out


def test_version_flag() -> None:
    out = subprocess.run(PY + ["-version"], capture_output=True, timeout=30, check=True)
    assert out.stdout == b"toxiproxy-server version 2.12.0\n"


def test_unknown_flag_exits_2_with_go_message() -> None:
    out = subprocess.run(PY + ["-bogus"], capture_output=True, timeout=30)
    assert out.returncode == 2
    assert b"flag provided but not defined: -bogus" in out.stderr


def test_main_is_callable_in_process() -> None:
    from harness.toxiproxy.__main__ import main

    assert main(["-version"]) == 0
    assert main(["-port", "notaport"]) == 2


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_closes_proxies(sig: signal.Signals, tmp_path: Path) -> None:
    port = free_port()
    with EchoServer() as echo:
        config = tmp_path / "proxies.json"
        config.write_text(json.dumps([{"name": "cfg", "upstream": echo.addr, "listen": "127.0.0.1:0"}]))
        proc = run_server(["-host", "127.0.0.1", "-port", str(port), "-config", str(config)])
        try:
            client = ToxiproxyClient(f"http://127.0.0.1:{port}")
            client.wait_ready(10)
            p = client.get_proxy("cfg")  # populated from -config
            assert p.enabled
            with socket.create_connection(("127.0.0.1", p.listen_port), timeout=5) as s:
                proc.send_signal(sig)
                assert proc.wait(timeout=10) == 0
                s.settimeout(5)
                assert s.recv(1) == b""  # the proxied connection was closed on shutdown
        finally:
            out = reap(proc)
        lines = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert any(doc.get("message") == "Starting Toxiproxy HTTP server" for doc in lines)


def test_bad_config_is_logged_not_fatal(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "bad.json"
    config.write_text('[{"name": ""}]')
    proc = run_server(["-host", "127.0.0.1", "-port", str(port), "-config", str(config)])
    try:
        client = ToxiproxyClient(f"http://127.0.0.1:{port}")
        client.wait_ready(10)
        assert client.proxies() == {}
    finally:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        out = reap(proc)
    assert b"missing required field: name at proxy 1" in out


def test_api_port_in_use_exits_nonzero() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        out = subprocess.run(PY + ["-host", "127.0.0.1", "-port", str(port)], capture_output=True, timeout=30)
    assert out.returncode == 1
    assert b"address already in use" in out.stdout


def test_process_launcher_cleans_up() -> None:
    tp = ToxiproxyProcess()
    with tp:
        pid = tp.proc.pid if tp.proc else 0
        assert ToxiproxyClient(tp.url).version() == "2.12.0"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(RuntimeError, match="not started"):
        _ = tp.url


def test_process_launcher_reports_startup_failure() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        with pytest.raises(StackStartTimeout, match="address already in use"):
            ToxiproxyProcess(port=squatter.getsockname()[1], startup_timeout=10).start()


# --- harness client -----------------------------------------------------------------------------


def test_int_attributes() -> None:
    assert int_attributes({"latency": 100.0, "jitter": 3}) == {"latency": 100, "jitter": 3}
    for bad in (1.5, "10", True, float("nan")):
        with pytest.raises(ConfigError, match="must be"):
            int_attributes({"latency": bad})


def test_split_listen_uses_rsplit() -> None:
    assert split_listen("[::]:8666") == ("::", 8666)
    p = ProxyInfo("n", "[::]:8666", "x:1", True)
    assert (p.listen_host, p.listen_port, p.connect_host) == ("::", 8666, "127.0.0.1")
    with pytest.raises(ConfigError):
        split_listen("nohost")


def test_client_errors_carry_status_and_message(client: ToxiproxyClient, echo: EchoServer) -> None:
    with pytest.raises(ToxiproxyError) as e:
        client.get_proxy("missing")
    assert (e.value.status, e.value.message) == (404, "proxy not found")
    assert isinstance(e.value, HarnessError)
    client.create_proxy("c", echo.addr)
    with pytest.raises(ToxiproxyError) as e:
        client.create_proxy("c", echo.addr)
    assert e.value.status == 409


def test_client_full_cycle(client: ToxiproxyClient, echo: EchoServer) -> None:
    created = client.populate([{"name": "a", "upstream": echo.addr, "listen": "127.0.0.1:0"}])
    assert [p.name for p in created] == ["a"]
    t = client.add_toxic("a", "latency", attributes={"latency": 10.0}, toxicity=0.5)
    assert (t.name, t.attributes, t.toxicity) == ("latency_downstream", {"latency": 10, "jitter": 0}, 0.5)
    assert client.update_toxic("a", t.name, attributes={"jitter": 2}).attributes == {"latency": 10, "jitter": 2}
    assert [x.name for x in client.toxics("a")] == [t.name]
    assert client.update_proxy("a", enabled=False).enabled is False
    client.reset()
    assert client.get_proxy("a").enabled and client.toxics("a") == []
    client.delete_proxy("a")
    assert client.proxies() == {}


def test_client_deadline_on_a_stuck_api() -> None:
    """A server that accepts and never answers must fail the call within the timeout, not hang."""
    with socket.socket() as stuck:
        stuck.bind(("127.0.0.1", 0))
        stuck.listen(8)
        held: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            stuck.settimeout(0.2)
            while not stop.is_set():
                try:
                    held.append(stuck.accept()[0])
                except OSError:
                    continue

        t = threading.Thread(target=accept)
        t.start()
        try:
            client = ToxiproxyClient(f"http://127.0.0.1:{stuck.getsockname()[1]}", timeout=0.5)
            start = time.monotonic()
            with pytest.raises(ToxiproxyError, match="did not answer"):
                client.proxies()
            assert time.monotonic() - start < 3
            with pytest.raises(TimeoutError, match="not ready after"):
                client.wait_ready(timeout=1.0)
        finally:
            stop.set()
            t.join(5)
            for s in held:
                s.close()


def test_client_rejects_bad_configuration() -> None:
    with pytest.raises(ConfigError):
        ToxiproxyClient("ftp://x")
    with pytest.raises(ConfigError):
        ToxiproxyClient("http://127.0.0.1:1", timeout=0)
    with pytest.raises(ConfigError, match="cannot be addressed"):
        ToxiproxyClient("http://127.0.0.1:1").get_proxy("a/b")


def test_server_needs_only_the_standard_library(tmp_path: Path) -> None:
    """Copy just the package into an empty dir and run it with `python -S` (no site-packages)."""
    import shutil

    src = Path(__file__).resolve().parents[2] / "harness"
    (tmp_path / "harness").mkdir()
    shutil.copy(src / "__init__.py", tmp_path / "harness" / "__init__.py")
    shutil.copytree(src / "toxiproxy", tmp_path / "harness" / "toxiproxy",
                    ignore=shutil.ignore_patterns("client.py", "process.py", "__pycache__"))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-S", "-m", "harness.toxiproxy", "-host", "127.0.0.1", "-port",
                             str(port)], cwd=tmp_path, env={"PATH": os.environ.get("PATH", "")},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = ToxiproxyClient(f"http://127.0.0.1:{port}")
        client.wait_ready(15)
        with EchoServer() as echo:
            p = client.create_proxy("stdlib", echo.addr)
            with socket.create_connection(("127.0.0.1", p.listen_port), timeout=5) as s:
                s.sendall(b"std")
                assert s.recv(3) == b"std"
    finally:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        out = reap(proc)
    assert proc.returncode == 0, out[-2000:]
