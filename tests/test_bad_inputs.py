"""Bad input to `celery-chaos`: every case exits 2 with one line on stderr naming the problem, no traceback.

Pure subprocess calls of the installed command. Every case fails before a server starts (the
checks of harness.preflight run first), so the table runs in a few seconds, a few cases at a time.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).parent / "celery-chaos"
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "harness"]

GOOD_REPRO = {"schedule": {"faults": []}, "seed": 1, "variant": {}, "n_per_kind": 1,
              "failure": {"lost": {"valid": False}}}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket closes


@pytest.fixture(scope="module")
def env_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    d = tmp_path_factory.mktemp("bad-inputs")
    (d / "mods").mkdir()
    files = {
        "wl_raises.py": "raise RuntimeError('boom at import')\n",
        "wl_syntax.py": "def broken(:\n",
        "wl_factory.py": "def factory():\n    raise ValueError('factory broke')\nnot_app = 5\n",
        "wl_exit.py": "import sys\nsys.exit(3)\n",
        "wl_nolocust.py": ("class W:\n    kinds = ('a',)\n    def units(self, n, r): return []\n"
                           "    def submit(self, app, u): return ''\n    def effects(self): return {}\n"),
        "app_raises.py": "from celery import Celery\nraise ImportError('app module broke')\n",
        "app_syntax.py": "from celery import Celery\napp = Celery(\n",
    }
    for name, text in files.items():
        (d / "mods" / name).write_text(text)
    (d / "a_file").write_text("x")
    (d / "empty.jsonl").write_text("")
    (d / "binary.jsonl").write_bytes(bytes(range(256)) * 8)
    (d / "garbage.jsonl").write_text("this is not\na history at all\n{\"half\": \n")
    (d / "not_json.json").write_text("{nope")
    from harness.history.merge import write_history
    from harness.history.ops import Op, OpType

    write_history([Op(0, 1, "nemesis", OpType.OK, "fault_stop")], d / "good.jsonl")
    for name, change in {"repro_seed.json": {"seed": "abc"}, "repro_variant.json": {"variant": 5},
                         "repro_failure.json": {"failure": []}, "repro_n.json": {"n_per_kind": [1]},
                         "repro_schedule.json": {"schedule": "soon"}}.items():
        (d / name).write_text(json.dumps({**GOOD_REPRO, **change}))
    (d / "repro_empty.json").write_text("{}")
    (d / "repro_list.json").write_text("[1, 2]")
    bin_dir = d / "bin-without-epmd"
    bin_dir.mkdir()
    for tool in ("redis-server", "rabbitmq-server"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    yield {"dir": d, "busy": int(busy.getsockname()[1]), "closed": _closed_port(), "bin": bin_dir}
    busy.close()


def _cases(e: dict[str, object]) -> list[tuple[str, list[str], dict[str, str]]]:
    d, closed, busy = e["dir"], e["closed"], e["busy"]
    amqp, redis = f"amqp://u:p@127.0.0.1:{closed}//", f"redis://127.0.0.1:{closed}/0"
    tp = f"http://127.0.0.1:{closed}"
    c = ["certify", "--report", str(d / "report")]
    return [
        ("report is a file", ["certify", "--report", str(d / "a_file")], {}),
        ("report under a file", ["certify", "--report", str(d / "a_file" / "sub")], {}),
        ("workload raises at import", [*c, "--workload", "wl_raises:W"], {}),
        ("workload syntax error", [*c, "--workload", "wl_syntax:W"], {}),
        ("workload factory raises", [*c, "--workload", "wl_factory:factory"], {}),
        ("workload module exits", [*c, "--workload", "wl_exit:W"], {}),
        ("workload missing module", [*c, "--workload", "no_such_module:W"], {}),
        ("workload missing attribute", [*c, "--workload", "wl_factory:nope"], {}),
        ("workload without colon", [*c, "--workload", "nocolon"], {}),
        ("workload is not a workload", [*c, "--workload", "wl_factory:not_app"], {}),
        ("app is not a Celery app", [*c, "--app", "wl_factory:not_app"], {}),
        ("app module missing", [*c, "--app", "no_such_module:app"], {}),
        ("app module raises", [*c, "--app", "app_raises:app"], {}),
        ("app syntax error", [*c, "--app", "app_syntax:app"], {}),
        ("app attribute missing", [*c, "--app", "sample_system:nope"], {}),
        ("unknown scenario", [*c, "--only", "no_such_scenario"], {}),
        ("unknown profile", [*c, "--profile", "bogus"], {}),
        # A certification draws nothing at random (its schedules are fixed): no --seed to give.
        ("certify has no seed", [*c, "--seed", "7"], {}),
        ("load rate zero", [*c, "--load", "0"], {}),
        ("load rate not a number", [*c, "--load", "fast"], {}),
        ("load on a workload without a locustfile", [*c, "--workload", "wl_nolocust:W", "--load", "5"], {}),
        ("external stack without URLs", [*c, "--stack", "external"], {"CHAOS_BROKER_URL": "", "CHAOS_BACKEND_URL": ""}),
        ("external stack unreachable", [*c, "--stack", "external", "--broker-url", amqp, "--backend-url", redis], {}),
        ("external URL without port", [*c, "--stack", "external", "--broker-url", "amqp://127.0.0.1",
                                       "--backend-url", redis], {}),
        ("broker URL on the local stack", [*c, "--broker-url", amqp], {}),
        ("cluster topology on the containers stack", [*c, "--stack", "containers", "--topology", "cluster"], {}),
        ("TOXIPROXY_URL unreachable", c, {"TOXIPROXY_URL": tp}),
        ("TOXIPROXY_URL not a URL", c, {"TOXIPROXY_URL": "toxiproxy:8474"}),
        ("redis-server missing", c, {"CHAOS_REDIS_SERVER": str(d / "no-redis-server")}),
        ("epmd missing from PATH", c, {"PATH": str(e["bin"])}),
        ("stack up local with a broker URL", ["stack", "up", "--provider", "local", "--broker-url", amqp], {}),
        ("stack up external without URLs", ["stack", "up", "--provider", "external"],
         {"CHAOS_BROKER_URL": "", "CHAOS_BACKEND_URL": ""}),
        ("stack up external unreachable", ["stack", "up", "--provider", "external", "--broker-url", amqp,
                                           "--backend-url", redis], {}),
        ("stack up local, Toxiproxy unreachable", ["stack", "up", "--toxiproxy-url", tp], {}),
        ("stack up unknown provider", ["stack", "up", "--provider", "podman"], {}),
        ("check empty file", ["check", str(d / "empty.jsonl")], {}),
        ("check binary file", ["check", str(d / "binary.jsonl")], {}),
        ("check garbage file", ["check", str(d / "garbage.jsonl")], {}),
        ("check missing file", ["check", str(d / "nope.jsonl")], {}),
        ("check expectations not JSON", ["check", str(d / "good.jsonl"), "--expect", str(d / "not_json.json")], {}),
        ("replay missing file", ["replay", str(d / "nope.json")], {}),
        ("replay not JSON", ["replay", str(d / "not_json.json")], {}),
        ("replay a directory", ["replay", str(d)], {}),
        ("replay seed is a string", ["replay", str(d / "repro_seed.json")], {}),
        ("replay variant is a number", ["replay", str(d / "repro_variant.json")], {}),
        ("replay failure is a list", ["replay", str(d / "repro_failure.json")], {}),
        ("replay n_per_kind is a list", ["replay", str(d / "repro_n.json")], {}),
        ("replay schedule is a string", ["replay", str(d / "repro_schedule.json")], {}),
        ("replay empty object", ["replay", str(d / "repro_empty.json")], {}),
        ("replay a JSON list", ["replay", str(d / "repro_list.json")], {}),
        ("soak duration too short", ["soak", "--duration", "5s"], {}),
        ("partner API port busy", ["<partner_api>", "--port", str(busy)], {}),
    ]


@pytest.fixture(scope="module")
def results(env_dir: dict[str, object]) -> dict[str, tuple[list[str], subprocess.CompletedProcess[str]]]:
    base_env = {**os.environ,
                "PYTHONPATH": os.pathsep.join([str(env_dir["dir"] / "mods"), str(REPO),  # type: ignore[operator]
                                               os.environ.get("PYTHONPATH", "")])}
    base_env.pop("TOXIPROXY_URL", None)

    def run(case: tuple[str, list[str], dict[str, str]]) -> tuple[str, list[str], subprocess.CompletedProcess[str]]:
        name, argv, extra = case
        cmd = ([sys.executable, "-m", "sample_system.partner_api", *argv[1:]] if argv[0] == "<partner_api>"
               else [*CLI, *argv])
        r = subprocess.run(cmd, env={**base_env, **extra}, cwd=env_dir["dir"], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        return name, cmd, r

    with ThreadPoolExecutor(max_workers=4) as pool:
        return {name: (cmd, r) for name, cmd, r in pool.map(run, _cases(env_dir))}


CASE_NAMES = [name for name, _, _ in _cases({"dir": Path("/x"), "closed": 1, "busy": 1, "bin": Path("/x")})]


def test_the_table_is_big_enough() -> None:
    assert len(CASE_NAMES) >= 30 and len(set(CASE_NAMES)) == len(CASE_NAMES)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_exits_2_with_one_line(name: str, results: dict[str, tuple[list[str], subprocess.CompletedProcess[str]]]) -> None:
    cmd, r = results[name]
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, f"{cmd}: exit {r.returncode}\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    assert len(lines) == 1, f"{cmd}: stderr should be one line:\n{r.stderr}"
    assert len(lines[0]) > 30, lines


def test_a_missing_redis_server_leaves_no_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from harness.errors import ConfigError
    from harness.stack.redis import LocalRedis

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ConfigError, match="redis-server not found"):
        LocalRedis(server_bin=str(tmp_path / "no-redis-server"))
    assert list(tmp_path.iterdir()) == []
