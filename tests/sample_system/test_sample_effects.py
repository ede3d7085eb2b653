"""The effect store on real SQLite files: idempotent writes, the no-idempotency variant, concurrent writers."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from sample_system.effects import Effect, EffectStore, FailureRecord


def store_at(tmp_path: Path, *, idempotent: bool = True) -> EffectStore:
    s = EffectStore(f"sqlite:///{tmp_path / 'fx.sqlite3'}", idempotent=idempotent)
    s.create_schema()
    return s


def fx(key: str, kind: str = "payment.charged", **value: object) -> Effect:
    return Effect(key=key, kind=kind, idempotency_key=f"{kind}:{key}", value=dict(value), task_id="t", run_id="r")


def test_a_duplicate_insert_is_a_success_and_is_counted(tmp_path: Path) -> None:
    s = store_at(tmp_path)
    assert s.apply([fx("o1", amount=10)]) is True
    assert s.apply([fx("o1", amount=10)]) is False
    assert s.apply([fx("o1", amount=10)]) is False
    (rec,) = s.effects_by_key()["o1"]
    assert (rec.kind, rec.idempotency_key, rec.value, rec.duplicate_writes) == (
        "payment.charged", "payment.charged:o1", {"amount": 10}, 2)


def test_effects_written_together_are_all_new_or_all_duplicates(tmp_path: Path) -> None:
    s = store_at(tmp_path)
    pair = [fx("o2"), fx("o2", kind="ledger.debit")]
    assert s.apply(pair) is True
    assert s.apply(pair) is False
    recs = s.effects_by_key()["o2"]
    assert sorted((r.kind, r.duplicate_writes) for r in recs) == [("ledger.debit", 1), ("payment.charged", 1)]


def test_without_idempotency_keys_a_duplicate_execution_writes_a_second_row(tmp_path: Path) -> None:
    s = store_at(tmp_path, idempotent=False)
    assert s.apply([fx("o3")]) and s.apply([fx("o3")])
    recs = s.effects_by_key()["o3"]
    assert [r.idempotency_key for r in recs] == ["payment.charged:o3", "payment.charged:o3"]


def test_reads_filter_by_key_and_run(tmp_path: Path) -> None:
    s = store_at(tmp_path)
    s.apply([fx("a")])
    s.apply([Effect("b", "k", "k:b", {}, run_id="other")])
    assert set(s.effects_by_key()) == {"a", "b"}
    assert set(s.effects_by_key(["b"])) == {"b"}
    assert set(s.effects_by_key(run_id="r")) == {"a"}


def test_failure_records_are_upserted_per_task(tmp_path: Path) -> None:
    s = store_at(tmp_path)
    rec = FailureRecord(task_id="t1", name="n", key="k", run_id=None, exception="E: boom", traceback="tb",
                        attempts=1, failed_at=1.0)
    s.record_failure(rec)
    s.record_failure(FailureRecord(**{**{f: getattr(rec, f) for f in FailureRecord.__slots__}, "attempts": 2}))
    got = s.failures(["t1", "missing"])
    assert list(got) == ["t1"] and (got["t1"].attempts, got["t1"].recorded) == (2, 2)
    assert s.failures([]) == {}


def test_reset_empties_the_store(tmp_path: Path) -> None:
    s = store_at(tmp_path)
    s.apply([fx("x")])
    s.reset()
    assert s.effects_by_key() == {}


def _writer(url: str, keys: list[str], results: mp.Queue) -> None:
    store = EffectStore(url)
    results.put(sum(store.apply([fx(k)]) for k in keys))


@pytest.mark.parametrize("processes", [4])
def test_concurrent_processes_write_each_effect_once(tmp_path: Path, processes: int) -> None:
    s = store_at(tmp_path)
    keys = [f"k{i}" for i in range(40)]
    ctx = mp.get_context("fork")
    results: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(s.db_url, keys, results)) for _ in range(processes)]
    for p in procs:
        p.start()
    try:
        new = sum(results.get(timeout=60) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
    assert new == len(keys), "exactly one writer wins each idempotency key"
    by_key = s.effects_by_key()
    assert all(len(by_key[k]) == 1 and by_key[k][0].duplicate_writes == processes - 1 for k in keys)


def test_the_engine_is_rebuilt_after_a_fork(tmp_path: Path) -> None:
    s = store_at(tmp_path)
    engine = s.engine
    assert s.engine is engine
    ctx = mp.get_context("fork")
    results: mp.Queue = ctx.Queue()
    p = ctx.Process(target=lambda: results.put(s.engine is not engine and s.apply([fx("forked")])))
    p.start()
    try:
        assert results.get(timeout=30) is True
    finally:
        p.join(timeout=30)
    assert "forked" in s.effects_by_key()
