"""`celery-chaos audit --app MOD:ATTR`: the real console script on apps written here; exit codes 0, 1, 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).with_name("celery-chaos"))

APPS = '''
from celery import Celery

defaults = Celery("defaults", broker="amqp://127.0.0.1:5672//", set_as_current=False)

hardened = Celery("hardened", broker="amqp://127.0.0.1:5672//", set_as_current=False)
hardened.conf.update(task_acks_late=True, task_reject_on_worker_lost=True, task_acks_on_failure_or_timeout=False,
                     worker_prefetch_multiplier=1, broker_transport_options={"confirm_publish": True},
                     task_time_limit=300, task_soft_time_limit=240,
                     worker_cancel_long_running_tasks_on_connection_loss=True)

@hardened.task(name="audit_cli.work", shared=False)
def work():
    return None

not_an_app = {"broker_url": "amqp://"}
'''


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "audit_cli_apps.py").write_text(APPS)
    (tmp_path / "audit_cli_broken.py").write_text("raise RuntimeError('settings missing')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAMPLE_")}
    env["PYTHONPATH"] = ""  # the current directory must be found the way `celery -A` finds it
    return subprocess.run([CLI, "audit", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_a_hardened_app_exits_0(tmp_path: Path):
    p = _run(tmp_path, "--app", "audit_cli_apps:hardened")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == "celery-chaos audit of audit_cli_apps:hardened"
    assert "[loss]" not in p.stdout and "[duplicate]" not in p.stdout
    assert "[info] mode 3 (poison_redelivery)" in p.stdout


def test_celery_defaults_exit_1_with_each_risk_in_plain_words(tmp_path: Path):
    p = _run(tmp_path, "--app", "audit_cli_apps:defaults")
    assert p.returncode == 1, p.stderr
    out = p.stdout
    for line in ("[loss] mode 3 (early_acks)", "[loss] mode 9 (prefetch_multiplier)",
                 "[loss] mode 11 (no_publisher_confirms)", "setting:  task_acks_late=False",
                 "fix:      Set task_acks_late=True"):
        assert line in out
    assert out.rstrip().splitlines()[-1].startswith("5 risk(s): 3 loss, 2 stall")


def test_json_output(tmp_path: Path):
    p = _run(tmp_path, "--app", "audit_cli_apps:defaults", "--json")
    assert p.returncode == 1
    doc = json.loads(p.stdout)
    assert doc["exit_code"] == 1 and doc["broker"] == "amqp"
    assert {r["id"]: r["mode"] for r in doc["risks"]}["early_acks"] == 3


@pytest.mark.parametrize(("spec", "words"), [
    ("no_such_module:app", "cannot import 'no_such_module'"),
    ("audit_cli_broken:app", "RuntimeError: settings missing"),
    ("audit_cli_apps:nope", "cannot get 'nope'"),
    ("audit_cli_apps:not_an_app", "is a dict, not a Celery app"),
])
def test_bad_input_exits_2_with_one_line(tmp_path: Path, spec: str, words: str):
    p = _run(tmp_path, "--app", spec)
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in p.stderr, p.stderr


def test_the_sample_system(tmp_path: Path):
    # Built from SAMPLE_* variables (none set: the production defaults on RabbitMQ).
    p = _run(tmp_path, "--app", "sample_system:app", "--json")
    assert p.returncode == 1, p.stderr
    ids = {r["id"] for r in json.loads(p.stdout)["risks"]}
    # its result-backend retry budget is bounded: the mode 17 finding of docs/failure-modes.md
    assert "backend_retry_budget" in ids
    assert not {"early_acks", "late_acks_without_reject", "no_publisher_confirms", "prefetch_multiplier"} & ids
