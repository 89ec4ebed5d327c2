"""The coordinator's report as one self-contained HTML page.

Jinja2 with autoescape renders it (every value from the store is escaped); the funnel chart is
an inline SVG drawn by matplotlib (text kept as text, no fonts or scripts to fetch). A strict
Content-Security-Policy (`default-src 'none'`) makes the page unable to load anything at all,
so it opens the same on a ward PC with no network. It shows patient ids as stored, never names.
"""

from __future__ import annotations

import io

import jinja2

from connector.portfolio.feasibility import Feasibility
from connector.portfolio.worklist import item_counts
from connector.results import MET, NOT_MET

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("connector.portfolio", "templates"),
                          autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(report: Feasibility) -> str:
    template = _ENV.get_template("report.html.j2")
    return template.render(report=report, chart=funnel_svg(report),
                           counts=item_counts(report.worklist), outcome_class=_outcome_class)


def _outcome_class(outcome: str, reason: str) -> str:
    if outcome == MET:
        return "met"
    if outcome == NOT_MET:
        return "not-met"
    return "review" if reason == "manual" else "unknown"


def funnel_svg(report: Feasibility) -> str:
    """A horizontal bar per funnel step (screened, then each criterion that removed anyone or left
    someone unknown), as an inline <svg> element."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [("screened", len(report.patients), 0, 0)] + [
        (s.criterion, s.remaining, s.not_met, s.unknown) for s in report.funnel if s.not_met or s.unknown]
    labels = [s[0] for s in steps]
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "trial-connector", "font.size": 9}):
        fig, ax = plt.subplots(figsize=(5.4, 0.32 * len(steps) + 1.0))
        y = list(range(len(steps)))[::-1]
        ax.barh(y, [s[1] for s in steps], color="#2b6cb0", label="remaining")
        ax.barh(y, [s[2] for s in steps], left=[s[1] for s in steps], color="#c53030", label="not met here")
        for yi, step in zip(y, steps):
            ax.text(step[1] + step[2] + 0.1, yi, f"{step[1]}", va="center")
        ax.set_yticks(y, labels)
        ax.set_xlabel("patients")
        ax.legend(loc="lower right", frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
        plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]  # drop the XML prolog and DOCTYPE: it is inlined in HTML

