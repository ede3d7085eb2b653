"""A self-contained, offline HTML report: summary table, and per scenario a timeline chart
(throughput, errors, latency) with fault windows shaded, then the verdicts with counterexamples.

No JavaScript, no external fonts or scripts: inline SVG and CSS only, so it opens anywhere.

Example:
    >>> from harness.report.model import CertificationReport
    >>> "<svg" in to_html(CertificationReport(profile="quick", scenarios=[])) or True
    True
"""

from __future__ import annotations

import html
import json

from harness.report.model import CertificationReport, ScenarioReport, allowed_words

_COLORS = {"true": "#1a7f37", "unknown": "#57606a", "false": "#cf222e", "skipped": "#8c959f", "allowed": "#bf8700"}
_LABEL = {"true": "valid", "unknown": "unknown", "false": "INVALID", "skipped": "skipped",
          "allowed": "allowed by your claim"}
_CSS = """
body{font:14px/1.45 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;color:#1f2328;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 6px;border-top:1px solid #d0d7de;padding-top:16px}
table{border-collapse:collapse;width:100%;margin:8px 0} th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa} .badge{display:inline-block;border-radius:10px;padding:0 8px;color:#fff;font-weight:600;font-size:12px}
.muted{color:#656d76} code,pre{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f6f8fa;border-radius:4px}
pre{padding:8px;overflow:auto;max-height:240px} details{margin:4px 0} .legend span{margin-right:14px}
.sw{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
"""


def _badge(valid: str) -> str:
    return f'<span class="badge" style="background:{_COLORS.get(valid, "#57606a")}">{_LABEL.get(valid, valid)}</span>'


def _chart(s: ScenarioReport, width: int = 1040) -> str:
    pts = s.timeline
    if not pts:
        return '<p class="muted">no operations recorded</p>'
    t_max = max(max(p.t for p in pts), max((w.end for w in s.fault_windows), default=0.0)) or 1.0
    left, right, panel_h, gap = 56, 12, 90, 26
    plot_w = width - left - right
    height = 3 * panel_h + 3 * gap + 20

    def x(t: float) -> float:
        return left + plot_w * t / t_max

    parts = [f'<svg width="{width}" height="{height}" role="img" '
             f'aria-label="timeline of {html.escape(s.name)}">']
    # Fault windows shaded across every panel.
    for w in s.fault_windows:
        x0, x1 = x(w.start), max(x(w.end), x(w.start) + 2)
        parts.append(f'<rect x="{x0:.1f}" y="4" width="{x1 - x0:.1f}" height="{height - 24}" fill="#cf222e" '
                     f'fill-opacity="0.10"><title>{html.escape(w.label)}: {w.start:.1f}s to {w.end:.1f}s</title></rect>')
        parts.append(f'<text x="{x0 + 2:.1f}" y="14" font-size="10" fill="#cf222e">{html.escape(w.label)}</text>')
    bucket = (pts[1].t - pts[0].t) if len(pts) > 1 else 1.0
    bar_w = max(1.0, plot_w * bucket / t_max - 1)
    panels: list[tuple[str, list[float | None], str, str]] = [
        ("completed/s", [float(p.completed) / bucket for p in pts], "#0969da", "bar"),
        ("errors/s", [float(p.errors) / bucket for p in pts], "#cf222e", "bar"),
        ("latency ms (p50, p99)", [p.p99_ms for p in pts], "#8250df", "line"),
    ]
    for i, (label, values, color, kind) in enumerate(panels):
        top = 20 + i * (panel_h + gap)
        vmax = max((v for v in values if v is not None), default=0.0) or 1.0
        parts.append(f'<line x1="{left}" y1="{top + panel_h}" x2="{left + plot_w}" y2="{top + panel_h}" stroke="#d0d7de"/>')
        parts.append(f'<text x="{left - 6}" y="{top + 10}" font-size="10" text-anchor="end" fill="#656d76">{vmax:.0f}</text>')
        parts.append(f'<text x="{left}" y="{top - 4}" font-size="11" fill="#1f2328">{label}</text>')
        if kind == "bar":
            for p, v in zip(pts, values, strict=True):
                if v:
                    h = panel_h * v / vmax
                    parts.append(f'<rect x="{x(p.t):.1f}" y="{top + panel_h - h:.1f}" width="{bar_w:.1f}" '
                                 f'height="{h:.1f}" fill="{color}"/>')
        else:
            for series, col in (([p.p99_ms for p in pts], "#8250df"), ([p.p50_ms for p in pts], "#1a7f37")):
                coords = [f"{x(p.t):.1f},{top + panel_h - panel_h * v / vmax:.1f}"
                          for p, v in zip(pts, series, strict=True) if v is not None]
                if coords:
                    parts.append(f'<polyline fill="none" stroke="{col}" stroke-width="1.5" points="{" ".join(coords)}"/>')
    axis_y = height - 6
    for k in range(6):
        t = t_max * k / 5
        parts.append(f'<text x="{x(t):.1f}" y="{axis_y}" font-size="10" text-anchor="middle" fill="#656d76">{t:.{1 if t_max < 20 else 0}f}s</text>')
    parts.append("</svg>")
    legend = ('<div class="legend muted"><span><i class="sw" style="background:#0969da"></i>completed</span>'
              '<span><i class="sw" style="background:#cf222e"></i>errors</span>'
              '<span><i class="sw" style="background:#1a7f37"></i>p50</span>'
              '<span><i class="sw" style="background:#8250df"></i>p99</span>'
              '<span><i class="sw" style="background:#cf222e;opacity:.25"></i>fault in force</span></div>')
    return "".join(parts) + legend


def _state(valid: str, allowed: dict[str, int]) -> str:
    # A pass that a weaker claim allowed is amber, never the green of "nothing happened".
    return "allowed" if valid == "true" and allowed else valid


def _human(name: str) -> str:
    return name.replace("_", " ")


def _counts(counts: dict[str, int]) -> str:
    shown = [f"{_human(k)}: {n}" for k, n in counts.items() if n]
    return "; ".join(shown) if shown else "all zero"


def _metric(name: str, value: float) -> str:
    label = _human(name.removeprefix("timing_").removesuffix("_s"))
    if name.endswith("_s"):
        return f"{label} {value * 1000:.0f} ms" if value < 1 else f"{label} {value:.1f} s"
    return f"{label} {value:.3g}"


_LOAD_COLUMNS = (("throughput_before_per_s", "before /s"), ("throughput_during_per_s", "during /s"),
                 ("throughput_after_per_s", "after /s"), ("time_to_recover_s", "recovered in s"),
                 ("p50_during_ms", "p50 during ms"), ("p99_during_ms", "p99 during ms"),
                 ("p50_after_ms", "p50 after ms"), ("p99_after_ms", "p99 after ms"))


def _load_table(metrics: dict[str, float]) -> str:
    """Per fault under load: throughput (executions/s), recovery and completion latency."""
    rows: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if key.startswith("load_") and key.endswith("]") and "[" in key:
            field, _, fault = key[len("load_"):-1].partition("[")
            rows.setdefault(fault, {})[field] = value
    if not rows:
        return ""
    head = "".join(f"<th>{label}</th>" for _, label in _LOAD_COLUMNS)
    body = "".join(
        f"<tr><td>{html.escape(fault)}</td>"
        + "".join(f"<td>{row[f]:.4g}</td>" if f in row else "<td>-</td>" for f, _ in _LOAD_COLUMNS) + "</tr>"
        for fault, row in rows.items())
    rate = metrics.get("load_rate_per_s")
    cap = (f"under load: {rate:g} units/s for {metrics.get('load_duration_s', 0):.0f} s, "
           f"{metrics.get('load_units', 0):.0f} units; backlog drained in {metrics.get('load_backlog_drain_s', 0):.1f} s"
           if rate else "under load")
    return f'<p class="muted">{html.escape(cap)}</p><table><tr><th>fault</th>{head}</tr>{body}</table>'


def _scenario(s: ScenarioReport) -> str:
    rows = []
    for name, v in s.verdicts.items():
        counts = _counts(dict(v.counts))
        notes = "<br>".join(html.escape(n) for n in v.notes[:4])
        ce = ""
        if v.counterexamples:
            ce = (f"<details><summary>{len(v.counterexamples)} counterexample(s)</summary><pre>"
                  f"{html.escape(json.dumps(list(v.counterexamples)[:10], indent=1, default=str))}</pre></details>")
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{_badge(v.valid.value)}</td><td>{html.escape(counts)}</td>"
                    f"<td>{notes}{ce}</td></tr>")
    metrics = ", ".join(_metric(k, v) for k, v in s.metrics.items() if not k.startswith("load_"))
    sched = html.escape(json.dumps(s.schedule, indent=1, default=str))
    err = f'<pre style="color:#cf222e">{html.escape(s.error)}</pre>' if s.error else ""
    replay = f"<p>replay: <code>{html.escape(s.replay)}</code></p>" if s.replay else ""
    allowed = (f'<p style="color:#9a6700"><b>allowed by your claim: {html.escape(allowed_words(s.allowed))}</b>'
               "; the default claim (at-least-once delivery, exactly-once effects) would fail this scenario</p>"
               if s.allowed else "")
    return (f'<h2 id="{html.escape(s.name)}">{html.escape(s.name)} {_badge(_state(s.valid, s.allowed))}</h2>'
            f'<p class="muted">{html.escape(s.description)} — {s.elapsed_s:.1f}s. {html.escape(metrics)}</p>{allowed}{err}'
            f"{_chart(s)}{_load_table(s.metrics)}<table><tr><th>checker</th><th>verdict</th><th>counts</th><th>notes</th></tr>{''.join(rows)}"
            f"</table><details><summary>fault schedule as run</summary><pre>{sched}</pre></details>{replay}")


_AUDIT_COLORS = {"confirmed": "#cf222e", "refuted": "#1a7f37", "not exercised": "#8c959f"}


def _audit(report: CertificationReport) -> str:
    """The static audit's risks with their statuses (confirmed red, refuted green, not exercised grey)."""
    if report.audit is None:
        return ""
    if not report.audit:
        return '<h2 id="audit">Static audit</h2><p class="muted">the audit found no risk in the configuration</p>'
    rows = "".join(
        f"<tr><td>{e.risk.mode}</td><td>{html.escape(e.risk.title)}<br><code>{html.escape(e.risk.setting)}</code></td>"
        f"<td>{html.escape(e.risk.severity)}</td>"
        f'<td><span class="badge" style="background:{_AUDIT_COLORS.get(e.status, "#57606a")}">'
        f"{html.escape(e.status)}</span>"
        + (f'<br><span class="muted">{html.escape(", ".join(e.scenarios))}</span>' if e.scenarios else "")
        + f"</td><td>{html.escape(e.risk.fix)}</td></tr>"
        for e in report.audit)
    return ('<h2 id="audit">Static audit</h2><p class="muted">risks read from the configuration '
            "(<code>celery-chaos audit</code>), each marked by what the scenarios observed</p>"
            "<table><tr><th>mode</th><th>risk</th><th>severity</th><th>status</th><th>fix</th></tr>"
            f"{rows}</table>")


def _coverage(report: CertificationReport) -> str:
    cov = report.coverage
    if not cov:
        return ""
    rows = "".join(
        f"<tr><td><code>{html.escape(name)}</code></td><td>{row['executed']}</td>"
        + (f"<td>cut {row['cut']}× (in {html.escape(', '.join(row['cut_in']))})</td>" if row["cut"]
           else f'<td style="color:#9a6700">not cut: {html.escape(row["why_not"])}</td>')
        + "</tr>" for name, row in cov.items())
    return ("<h2>Fault coverage per task</h2><p class=\"muted\">A bug hides in the task that was never cut: each task "
            "name the workload ran, and whether a kill cut it mid-run.</p>"
            f"<table><tr><th>task</th><th>executions</th><th>cut mid-run</th></tr>{rows}</table>")


def to_html(report: CertificationReport) -> str:
    """Render the whole report as one HTML document (a string)."""
    summary_rows = "".join(
        f'<tr><td><a href="#{html.escape(s.name)}">{html.escape(s.name)}</a></td>'
        f"<td>{_badge(_state(s.valid, s.allowed))}</td>"
        f"<td>{s.elapsed_s:.1f}s</td><td>{html.escape(', '.join(str(f.get('kind', '')) for f in s.schedule))}</td></tr>"
        for s in report.scenarios)
    claim = report.claim
    state = _state(report.valid, report.allowed)
    head = (f"<h1>Celery chaos certification {_badge(state)}</h1>"
            f'<p style="font-size:15px">claim: <b>{html.escape(claim.get("delivery", "?"))}</b> delivery, '
            f'<b>{html.escape(claim.get("effects", "?"))}</b> effects</p>'
            + (f'<p style="color:#9a6700"><b>allowed by your claim: {html.escape(allowed_words(report.allowed))}</b></p>'
               if state == "allowed" else "")
            + "".join(f'<p class="muted">{html.escape(role)}: {html.escape(text)}</p>'
                      for role, text in report.substitutions.items())
            + f'<p class="muted">profile <b>{html.escape(report.profile)}</b> · app <code>{html.escape(report.app)}</code>'
            f" · workload <code>{html.escape(report.workload)}</code> · seed {report.seed} · {report.elapsed_s:.0f}s</p>")
    if report.interrupted:
        head += (f"<p><b>Interrupted by {html.escape(report.interrupted)}</b>: a partial report of the "
                 f"{len(report.scenarios)} scenario(s) that finished; the rest did not run.</p>")
    table = (f"<table><tr><th>scenario</th><th>verdict</th><th>time</th><th>faults</th></tr>{summary_rows}</table>"
             if report.scenarios else '<p class="muted">no scenario ran: the certification is unknown</p>')
    body = head + table + _coverage(report) + _audit(report) + "".join(_scenario(s) for s in report.scenarios)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Celery chaos certification: '
            f"{_LABEL.get(state, state)}</title><style>{_CSS}</style></head><body>{body}</body></html>")
