"""`celery-chaos images …` (also `python -m harness.images …`): build and inspect the local images.

Responsibility: the command-line face of harness.images: `build` makes the registry-free
images (cached base, small derived images) and prints what it made and how long it took;
`status` says whether Docker answers and which official and local images are present.

Example:
    $ sudo celery-chaos images build            # cold: Debian packages -> chaos/*:local
    $ celery-chaos images status --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from harness.errors import HarnessError
from harness.images.names import Service


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="celery-chaos images",
                                description="Registry-free container images for the containers stack.")
    sub = p.add_subparsers(dest="images_command", required=True)
    b = sub.add_parser("build", help="build chaos/{rabbitmq,redis,toxiproxy,python}:local from Debian packages")
    b.add_argument("--force", action="store_true", help="rebuild the base root filesystem even when cached")
    b.add_argument("--cache", default=None, help="cache directory (default CHAOS_IMAGE_CACHE or /var/cache/celery-chaos)")
    b.add_argument("--mirror", default=None, help="Debian mirror (default: the one apt uses, or CHAOS_DEBIAN_MIRROR)")
    b.add_argument("--only", default="", help="comma-separated services: rabbitmq,redis,toxiproxy,python")
    b.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    s = sub.add_parser("status", help="is Docker usable, which images are present")
    s.add_argument("--json", action="store_true")
    return p


def _services(text: str) -> tuple[Service, ...]:
    if not text:
        return tuple(Service)
    names = [t.strip() for t in text.split(",") if t.strip()]
    known = {s.value: s for s in Service}
    bad = [n for n in names if n not in known]
    if bad:
        raise SystemExit(f"celery-chaos images build: unknown service(s) {bad}; use some of {', '.join(known)}")
    return tuple(known[n] for n in names)


def _build(args: argparse.Namespace) -> int:
    from harness.images.build import build_images

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = build_images(_services(args.only), cache=args.cache, mirror=args.mirror, force=args.force, log=log)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        for service, tag in report.images.items():
            print(f"{service.value:10} {tag}")
        print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in report.seconds.items()))
    return 0


def _status(args: argparse.Namespace) -> int:
    from harness.images.engine import docker_client, docker_status, image_present

    st = docker_status()
    out: dict[str, object] = {"docker": {"usable": st.usable, "reason": st.reason, "version": st.server_version}}
    if st.usable:
        client = docker_client()
        try:
            out["images"] = {s.value: {"official": s.official, "official_present": image_present(client, s.official),
                                       "local": s.local, "local_present": image_present(client, s.local)}
                             for s in Service}
        finally:
            client.close()
    if args.json:
        print(json.dumps(out))
    else:
        print(f"docker: {'usable, engine ' + st.server_version if st.usable else 'NOT usable: ' + st.reason}")
        for name, info in dict(out.get("images", {})).items():  # type: ignore[call-overload]
            print(f"{name:10} official {info['official']} {'present' if info['official_present'] else 'absent'}; "
                  f"local {info['local']} {'present' if info['local_present'] else 'absent'}")
    return 0 if st.usable else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run `images build|status` with `argv` (default sys.argv[1:]); returns the exit code."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return _build(args) if args.images_command == "build" else _status(args)
    except HarnessError as exc:
        print(f"celery-chaos images: {exc}", file=sys.stderr)
        return 2
