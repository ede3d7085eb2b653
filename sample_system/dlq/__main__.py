"""``python -m sample_system.dlq``: list, replay or purge dead letters of the sample system.

Configuration comes from the same ``SAMPLE_*`` environment variables the workers use
(``SAMPLE_BROKER_URL``, ``SAMPLE_DB_URL``, ...).

Example::

    $ python -m sample_system.dlq list
    TASK ID                               NAME             KEY             ATTEMPTS COPIES QUEUE   EXCEPTION
    0c1f...                               orders.validate  r1:poison:0            1      1 orders  OrderValidationError: ...
    $ python -m sample_system.dlq list --json
    $ python -m sample_system.dlq replay 0c1f...
    $ python -m sample_system.dlq purge --yes
"""

from __future__ import annotations

import argparse
import json
import sys

from harness.errors import ConfigError
from sample_system.dlq.queues import dead_letters_for
from sample_system.effects import EffectStore
from sample_system.factory import make_app
from sample_system.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sample_system.dlq",
                                     description="List, replay or purge the sample system's dead letters.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="show every dead letter (one line per task id)")
    p_list.add_argument("--json", action="store_true", help="print full envelopes as JSON")
    p_list.add_argument("--limit", type=int, default=10_000, help="read at most this many messages")
    p_replay = sub.add_parser("replay", help="republish chosen dead letters (same task id, retries reset)")
    p_replay.add_argument("task_ids", nargs="*", metavar="TASK_ID")
    p_replay.add_argument("--all", action="store_true", help="replay every dead letter")
    p_purge = sub.add_parser("purge", help="delete every dead letter")
    p_purge.add_argument("--yes", action="store_true", help="really delete")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = make_app(settings)
    store = EffectStore(settings.db_url, idempotent=settings.idempotent_effects)
    dlq = dead_letters_for(app, effects=store)

    if args.command == "list":
        entries = dlq.entries(limit=args.limit)
        if args.json:
            print(json.dumps([e.to_dict() for e in entries], indent=2, default=str))
            return 0
        print(f"{'TASK ID':37} {'NAME':28} {'KEY':24} {'ATTEMPTS':>8} {'COPIES':>6} {'QUEUE':14} EXCEPTION")
        for e in entries:
            first_line = (e.exception or "").splitlines()[0] if e.exception else ""
            print(f"{e.task_id:37} {e.name:28} {(e.key or '-'):24} {e.attempts:>8} {e.copies:>6} "
                  f"{(e.queue or '-'):14} {first_line[:100]}")
        print(f"{len(entries)} dead letter(s)")
        return 0
    if args.command == "replay":
        ids = [e.task_id for e in dlq.entries()] if args.all else list(args.task_ids)
        if not ids:
            print("error: name the TASK_IDs to replay (see `list`) or pass --all", file=sys.stderr)
            return 2
        replayed = dlq.replay(ids)
        missing = sorted(set(ids) - set(replayed))
        for tid in replayed:
            print(f"replayed {tid}")
        for tid in missing:
            print(f"not in the DLQ: {tid}", file=sys.stderr)
        return 1 if missing else 0
    if args.command == "purge":
        if not args.yes:
            print("error: purge deletes every dead letter; pass --yes to confirm", file=sys.stderr)
            return 2
        print(f"purged {dlq.purge()} message(s)")
        return 0
    return 2  # pragma: no cover - argparse enforces the choices


if __name__ == "__main__":
    raise SystemExit(main())
