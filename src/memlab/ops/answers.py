"""``python -m memlab.ops.answers [findings file] [snakemake args]``: the study's answers where
the user looks, at the end of ``./run.sh study``.

Prints the findings the ``summarize`` rule wrote (``results/findings.txt``: the numbered answers,
one line each with their intervals, then the questions held back or not answered and why) and the
page to open. Light on purpose (no pandas): it runs after every study. Snakemake arguments may
follow (run.sh passes its own); a dry run (``-n``) prints nothing, since it made no findings.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from memlab.plan.registry import FINDINGS_TEXT, SUMMARY_PAGE

DRY_RUN = ("-n", "--dry-run", "--dryrun")


def answers(findings: Path, page: Path) -> str:
    """The findings file's lines under a heading, then the page to open."""
    lines = findings.read_text().strip()
    return (
        f"memlab: findings ({findings}):\n{lines}\n"
        f"memlab: open {page} for each answer beside its figure "
        "(or results/report.html, the full report)\n"
    )


def main(argv: Sequence[str]) -> int:
    if any(a in DRY_RUN for a in argv):
        return 0
    # The findings file is the first argument that is not a Snakemake option, if any.
    given = [a for a in argv if not a.startswith("-") and a.endswith(".txt")]
    findings = Path(given[0] if given else FINDINGS_TEXT)
    if not findings.is_file():
        print(
            f"memlab: no findings to show: {findings} is missing (the study has not finished; "
            "run ./run.sh study)",
            file=sys.stderr,
        )
        return 0
    print(answers(findings, findings.parent / Path(SUMMARY_PAGE).relative_to("results")), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
