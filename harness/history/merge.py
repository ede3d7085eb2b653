"""Reading, merging and writing histories as JSON lines.

Responsibility: per-process files -> one `History` (tolerating the torn last line a SIGKILL
leaves), and a `History` -> one ``HISTORY.jsonl`` file.

Merge order is ``(time, process, local index)``: CLOCK_MONOTONIC orders ops of different
processes; the process name and the file-local index break ties deterministically. The merged
history gets fresh indices 0..n-1.

Example:
    >>> import tempfile, pathlib
    >>> from harness.history.recorder import HistoryRecorder
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with HistoryRecorder(d, "nemesis") as a, HistoryRecorder(d, "harness") as b:
    ...     _ = a.record("fault_start", "invoke", {"fault": "kill_worker"})
    ...     _ = b.record("phase", "ok", {"phase": "heal"})
    >>> h = read_history(d)
    >>> [(op.index, op.f) for op in h]
    [(0, 'fault_start'), (1, 'phase')]
"""

from __future__ import annotations

import dataclasses
import json
import operator
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

import msgspec

from harness.gcpause import gc_paused
from harness.history.history import History, SkippedLine
from harness.history.ops import Op

__all__ = ["is_process_file", "merge_ops", "parse_op_line", "read_history", "write_history"]

# Per-process files are "<process>.<pid>.jsonl" (see recorder.history_file_name); any other
# *.jsonl in the directory (a merged HISTORY.jsonl written next to them) is not merged again.
_PROCESS_FILE = re.compile(r"^.+\.\d+\.jsonl$")

# Decodes one JSON line straight into an `Op` (C speed, no intermediate dict). Strict on types:
# what it refuses is read again by `Op.from_dict`, so what a line means never depends on which
# path read it.
_OP_DECODER = msgspec.json.Decoder(Op)
_MERGE_KEY = operator.attrgetter("time", "process", "index")
_SET_INDEX = Op.__dict__["index"].__set__  # the slot's descriptor, for ops this module owns


def is_process_file(path: Path) -> bool:
    """Whether `path` is named like a recorder's per-process file (``<process>.<pid>.jsonl``)."""
    return bool(_PROCESS_FILE.match(path.name))


def merge_ops(per_process: Iterable[Iterable[Op]]) -> tuple[Op, ...]:
    """Merge ops of several processes into one order and reassign ``index`` 0..n-1.

    >>> from harness.history.ops import OpType
    >>> a = [Op(0, 30, "b", OpType.OK, "phase"), Op(1, 40, "b", OpType.OK, "phase")]
    >>> b = [Op(0, 30, "a", OpType.OK, "phase")]
    >>> [(o.index, o.time, o.process) for o in merge_ops([a, b])]
    [(0, 30, 'a'), (1, 30, 'b'), (2, 40, 'b')]
    """
    ops = [op for group in per_process for op in group]
    ops.sort(key=_MERGE_KEY)
    return tuple(dataclasses.replace(op, index=i) for i, op in enumerate(ops))


def _merge_owned(per_process: Iterable[list[Op]]) -> list[Op]:
    """`merge_ops` for ops this module has just decoded and nobody else holds yet.

    Their ``index`` is rewritten in place through the slot (the frozen dataclass's own
    ``__setattr__`` refuses): a copy per op costs ~1 s per million ops, and no caller can
    observe the change because none has seen these objects.
    """
    ops = [op for group in per_process for op in group]
    ops.sort(key=_MERGE_KEY)
    _reindex_owned(ops)
    return ops


def _reindex_owned(ops: list[Op]) -> None:
    set_index = _SET_INDEX
    for i, op in enumerate(ops):
        set_index(op, i)


def _read_file(path: Path) -> tuple[list[Op], list[SkippedLine]]:
    ops: list[Op] = []
    bad: list[tuple[int, str]] = []
    decode = _OP_DECODER.decode
    append = ops.append
    last = -1  # index of the last non-blank line: a torn write can only be there
    # Streamed line by line (not read whole and split) so a large file's bytes are never held
    # beside the ops built from them; the collector is paused because every op survives.
    with gc_paused(), open(path, "rb") as fh:
        for i, raw in enumerate(fh):
            if not raw.strip():
                continue
            last = i
            try:
                append(decode(raw))
            except (msgspec.DecodeError, UnicodeDecodeError):
                op, reason = _read_line_slowly(raw)
                if op is not None:
                    append(op)
                else:
                    bad.append((i, reason))
    skipped = [SkippedLine(file=str(path), line=i + 1, reason=r, torn=(i == last)) for i, r in bad]
    return ops, skipped


def parse_op_line(raw: bytes) -> Op | None:
    """One line of a history file as an `Op`, read exactly as `read_history` reads it; None for
    a line that is no op (a torn write of a killed process, a blank line).

    >>> parse_op_line(b'{"time": 5, "process": "w1", "type": "ok", "f": "execute", "value": {}}').f
    'execute'
    >>> parse_op_line(b'{"time": 5, "proc') is None
    True
    """
    if not raw.strip():
        return None
    try:
        op: Op = _OP_DECODER.decode(raw)
        return op
    except (msgspec.DecodeError, UnicodeDecodeError):
        return _read_line_slowly(raw)[0]


def _read_line_slowly(raw: bytes) -> tuple[Op | None, str]:
    """One line the typed decoder refused, read the lenient way `Op.from_dict` always read it.

    The typed decoder accepts only exact types (an int time, a str error), so a line it refuses
    may still be an op here (a float time is truncated, an error of any type is kept); a line
    neither accepts is skipped with the stdlib's reason, as before.
    """
    try:
        d = json.loads(raw.rstrip(b"\n").decode("utf-8"))
        if not isinstance(d, dict):
            raise ValueError(f"a JSON {type(d).__name__}, not an object")
        return Op.from_dict(d), ""
    except (ValueError, KeyError, TypeError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        return None, reason[:200]


def read_history(path: Path | str, *, strict: bool = False) -> History:
    """Read a history: a directory of per-process files (merged) or one JSON-lines file.

    A directory is merged in ``(time, process, local index)`` order and reindexed. A single
    file keeps its line order; its indices are kept when they are strictly increasing and
    reassigned otherwise. Unparseable lines are skipped and listed in ``History.skipped``; a
    torn *last* line of a file is the expected trace of a SIGKILL. With ``strict=True`` a
    skipped line anywhere else raises ``ValueError``.

    Example: ``read_history("runs/2024-05-01T10-00/history")``.
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and is_process_file(f))
        groups: list[list[Op]] = []
        skipped: list[SkippedLine] = []
        for f in files:
            ops, sk = _read_file(f)
            groups.append(ops)
            skipped.extend(sk)
        with gc_paused():
            result = History(_merge_owned(groups), skipped)
    elif p.is_file():
        ops, skipped = _read_file(p)
        if any(b.index <= a.index for a, b in zip(ops, ops[1:], strict=False)) or any(o.index < 0 for o in ops):
            _reindex_owned(ops)
        result = History(ops, skipped)
    else:
        raise FileNotFoundError(
            f"no history at {str(p)!r}: pass the run's history directory (per-process *.<pid>.jsonl "
            "files) or a merged HISTORY.jsonl file"
        )
    if strict:
        damaged = [s for s in result.skipped if not s.torn]
        if damaged:
            first = damaged[0]
            raise ValueError(
                f"{len(damaged)} damaged line(s) in the history, first {first.file}:{first.line}: "
                f"{first.reason}; only a torn last line per file is expected (read with strict=False "
                "to skip them)"
            )
    return result


def write_history(history: Iterable[Op], path: Path | str) -> Path:
    """Write ops as one JSON line each, atomically (temp file + rename). Returns the path.

    >>> import tempfile, pathlib
    >>> from harness.history.ops import OpType
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "HISTORY.jsonl"
    >>> _ = write_history([Op(0, 1, "nemesis", OpType.OK, "fault_stop")], out)
    >>> len(read_history(out))
    1
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for op in history:
                fh.write(op.to_json())
                fh.write("\n")
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target
