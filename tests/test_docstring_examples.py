"""Every docstring example in `harness` and `sample_system` runs and holds: they are the API's first documentation.

The examples run in one subprocess: importing the load modules lets Locust monkey-patch the
standard library with gevent, which must not happen inside the pytest process. Temporary
directories the examples create (``tempfile.mkdtemp()``) go under the test's `tmp_path`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SWEEP = r"""
import doctest, importlib, io, json, pkgutil, sys, contextlib
import harness, sample_system
result = {"attempted": 0, "modules": 0, "failed": {}}
for pkg in (harness, sample_system):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        report = io.StringIO()
        with contextlib.redirect_stdout(report):
            r = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        result["attempted"] += r.attempted
        result["modules"] += 1
        if r.failed:
            result["failed"][info.name] = report.getvalue()[-3000:]
print("SWEEP " + json.dumps(result))
"""


def test_every_docstring_example_runs(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", SWEEP], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("SWEEP ")), None)
    assert proc.returncode == 0 and line is not None, f"the sweep crashed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(line[len("SWEEP "):])
    assert not result["failed"], "\n\n".join(f"{name}:\n{out}" for name, out in result["failed"].items())
    # A sweep that found nothing would pass vacuously: the packages hold hundreds of examples.
    assert result["modules"] > 80 and result["attempted"] > 300, result
