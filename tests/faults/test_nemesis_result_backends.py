"""Backend faults on the result backends other than Redis: SQLite (``db+sqlite://``) and ``rpc://``.

The SQLite stack runs a Redis broker (it starts in well under a second); what is under test is
what Celery's database backend sees while the nemesis holds the fault, and that the heal gives
back every committed result.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery
from sqlalchemy.exc import OperationalError

from harness.errors import UnsupportedFault
from harness.faults import BackendOutage, RolePartition
from harness.faults.drivers import FaultContext, driver_for
from harness.faults.nemesis import Nemesis
from harness.history import F, OpType, read_history
from harness.stack.base import Role, StackURLs
from harness.stack.local import LocalStack, LocalStackOptions

pytestmark = pytest.mark.chaos


@pytest.fixture(scope="module")
def sqlite_stack() -> Iterator[LocalStack]:
    with LocalStack(LocalStackOptions(broker="redis", result_backend="sqlite")) as stack:
        yield stack


def _app(url: str) -> Celery:
    app = Celery("sqlite-probe", backend=url, set_as_current=False)
    # One attempt, a short busy timeout: the test sees the error itself, not the retries around it.
    app.conf.update(result_backend_always_retry=False, result_backend_max_retries=0,
                    database_engine_options={"connect_args": {"timeout": 0.3}})
    return app


def _pooled(app: Celery) -> Any:
    backend = app.backend
    backend.session_manager.forked = True  # as in a prefork child: a pooled engine, connections kept open
    return backend


def test_the_sqlite_stack_serves_db_sqlite_with_no_backend_proxy(sqlite_stack: LocalStack) -> None:
    urls = sqlite_stack.urls
    assert urls.backend_url.startswith("db+sqlite:////")
    assert urls.url_for(Role.WORKER_BACKEND) == urls.backend_url  # no proxy: the file itself
    assert Role.WORKER_BACKEND not in urls.proxied and Role.WORKER_BROKER in urls.proxied
    assert sqlite_stack.backend is not None and sqlite_stack.backend.pids == []
    assert str(sqlite_stack.backend.base_dir) in sqlite_stack.temp_dirs()


def test_sqlite_kill_restart_fails_every_write_and_the_heal_keeps_the_results(sqlite_stack: LocalStack,
                                                                             tmp_path: Path) -> None:
    app = _app(sqlite_stack.urls.backend_url)
    backend = _pooled(app)
    backend.store_result("before-kill", 1, "SUCCESS")
    n = Nemesis(sqlite_stack, history_dir=tmp_path / "history")
    try:
        with n.fault(BackendOutage("kill_restart")) as applied:
            assert applied.effect["action"].startswith("database file moved away")
            assert not sqlite_stack.backend.is_running()
            with pytest.raises(OperationalError, match="readonly database|unable to open database"):
                backend.store_result("during-kill", 2, "SUCCESS")
            with pytest.raises(OperationalError, match="unable to open database file"):  # a new connection
                _app(sqlite_stack.urls.backend_url).backend.get_task_meta("before-kill")
        assert sqlite_stack.backend.is_running()
        backend.store_result("after-heal", 3, "SUCCESS")
        reader = _app(sqlite_stack.urls.backend_url).backend
        assert reader.get_task_meta("before-kill")["status"] == "SUCCESS"
        assert reader.get_task_meta("after-heal")["status"] == "SUCCESS"
        assert reader.get_task_meta("during-kill")["status"] == "PENDING"  # never written anywhere
    finally:
        n.close()
        app.close()
    ops = read_history(tmp_path / "history")
    assert any(op.f == F.FAULT_STOP and op.type is OpType.OK for op in ops)


def test_sqlite_graceful_stop_locks_the_database_until_the_heal(sqlite_stack: LocalStack, tmp_path: Path) -> None:
    app = _app(sqlite_stack.urls.backend_url)
    backend = _pooled(app)
    backend.store_result("before-lock", 1, "SUCCESS")
    n = Nemesis(sqlite_stack, history_dir=tmp_path / "history")
    try:
        with n.fault(BackendOutage("graceful_stop")) as applied:
            assert applied.effect["action"].startswith("database locked")
            with pytest.raises(OperationalError, match="database is locked"):
                backend.store_result("during-lock", 2, "SUCCESS")
        backend.store_result("after-heal", 3, "SUCCESS")
        assert backend.get_task_meta("before-lock")["status"] == "SUCCESS"
        assert backend.get_task_meta("after-heal")["status"] == "SUCCESS"
    finally:
        n.close()
        app.close()


def test_a_network_fault_on_the_sqlite_backend_is_refused_naming_the_fault_that_acts(sqlite_stack: LocalStack,
                                                                                     tmp_path: Path) -> None:
    n = Nemesis(sqlite_stack, history_dir=tmp_path / "history")
    try:
        for fault in (BackendOutage("proxy_down"), RolePartition("worker_backend")):
            with pytest.raises(UnsupportedFault, match=r"mode='kill_restart'"):
                driver_for(fault).preflight(FaultContext(sqlite_stack), fault, fault.kind)
    finally:
        n.close()


def test_a_backend_fault_on_rpc_is_refused_naming_the_broker_faults() -> None:
    urls = StackURLs(broker_url="amqp://g:g@127.0.0.1:1//", backend_url="rpc://", toxiproxy_url="http://x",
                     proxied={})
    stack = SimpleNamespace(provider="local", toxiproxy=object(), broker=SimpleNamespace(ctl=None), backend=None,
                            urls=urls, extra_proxies={})
    for fault in (BackendOutage("kill_restart"), BackendOutage("blackhole")):
        with pytest.raises(UnsupportedFault, match="rpc:// backend is the broker"):
            driver_for(fault).preflight(FaultContext(stack), fault, fault.kind)  # type: ignore[arg-type]
