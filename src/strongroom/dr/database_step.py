"""A database step: the restored PostgreSQL dump loaded into its database.

The dump is loaded before the after-commands, so they can probe the
database (its name is in STRONGROOM_DATABASE). A rehearsal never touches a
real target, and a database is one: it loads the dump into a scratch
database on the same server (`NAME_drtest_RUNID`) and drops it after the
after-commands, even when the load failed half-way, unless the scratch
area is kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from strongroom.dr.plan import Step
from strongroom.dr.step_state import StepState
from strongroom.errors import StrongroomError


def load_database(step: Step, mode: str, run_id: str, keep: bool, target: str, env: dict[str, str],
                  state: StepState, after: Callable[[dict[str, str]], object]) -> None:
    """Load the step's dump (restored below `target`), then run `after` with the
    environment of its commands; in a rehearsal, into a scratch database dropped afterwards."""
    from strongroom.sources.dsn import database_of, split_password
    from strongroom.sources.postgres import drop_database, scratch_database

    database = step.database if mode == "run" else scratch_database(step.database, run_id)
    name = database_of(split_password(database)[0])
    try:
        if _load(database, name, target, state):
            after({**env, "STRONGROOM_DATABASE": name})
    finally:
        if mode == "test" and not keep:
            try:
                drop_database(database)
            except StrongroomError as e:
                state.warn(f"the scratch database {name} was not dropped: {e}")


def _load(database: str, name: str, target: str, state: StepState) -> bool:
    """Load the one restored dump into `database`; False (the step failed) when there is not one."""
    from strongroom.sources.postgres import load_dump

    dumps = [os.path.join(d, f) for d, _, names in os.walk(target) for f in names if f.endswith(".dump")]
    if len(dumps) != 1:
        state.fail(f"expected one restored .dump file to load into {name}, found {len(dumps)}")
        return False
    load_dump(dumps[0], database)
    state.database = name
    return True
