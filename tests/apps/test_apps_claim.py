"""A weaker claim turns the defaults app's losses into a pass that says what it allowed, in amber.

Same run as test_apps_certify's defaults case, under ``--claim at-most-once``: the kills still
lose tasks; the certificate passes (exit 0) only because the user said losing is acceptable,
and it says so ("allowed by your claim: N tasks lost"), never "valid" in green.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_apps_certify import certify, summarize  # type: ignore[import-not-found]

pytestmark = [pytest.mark.chaos, pytest.mark.full, pytest.mark.timeout(900)]


def test_at_most_once_claim_allows_the_loss_and_says_so(tmp_path: Path) -> None:
    rc, report, err = certify("shop_django", False, tmp_path / "report", extra=("--claim", "at-most-once"))
    summary = summarize(report)
    assert rc == 0, f"the claim allows losses: expected exit 0, got {rc}\n{summary}"
    assert report["claim"] == {"delivery": "at-most-once", "effects": "exactly-once"}
    assert report["allowed_by_claim"].get("lost", 0) >= 1, summary
    assert "tasks lost" in report["allowed_words"]
    assert "ALLOWED BY YOUR CLAIM" in err and "certification VALID" not in err
    html = (tmp_path / "report" / "report.html").read_text()
    assert "allowed by your claim" in html
