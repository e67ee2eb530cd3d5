"""The self-contained HTML audit report of a run: one Jinja2 template
(``report.html.j2``) and a small renderer. ``write_report(RUN)`` writes ``RUN/report.html``."""

from .render import render_report, write_report

__all__ = ["render_report", "write_report"]
