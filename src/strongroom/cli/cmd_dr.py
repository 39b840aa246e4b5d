"""`strongroom dr`: disaster-recovery plans.

Each part of the group lives in its own module, which exports click commands;
they are added to the group at the bottom of this file.
"""

from __future__ import annotations

import click


@click.group()
def dr() -> None:
    """Disaster-recovery plans: recover, test, report."""


COMMANDS = [dr]

from strongroom.cli.cmd_dr_recover import dr_kit, dr_recover  # noqa: E402

dr.add_command(dr_kit)
dr.add_command(dr_recover)
