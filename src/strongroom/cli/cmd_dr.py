"""dr: disaster-recovery plans. The plan commands live here; running and
rehearsing a plan (`dr run`, `dr test`) in cmd_dr_run.py."""

from __future__ import annotations

import click


@click.group()
def dr() -> None:
    """Disaster-recovery plans: run, rehearse, report."""


COMMANDS = [dr]

# ---- the subcommands other modules define -------------------------------------------------
from strongroom.cli.cmd_dr_run import dr_run, dr_test  # noqa: E402

dr.add_command(dr_run)
dr.add_command(dr_test)
