"""`strongroom schedule list|next`: when the schedules are due: the
configurations' backups and checks, the DR plans' tests (each row says its kind).

Times are shown in the machine's local time (with --json as RFC 3339 with
the offset). The scheduler that runs the slots is `strongroom serve`; these
commands only read the catalog."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import click

from strongroom.cli.cmd_manage import Manage, manage_options
from strongroom.cli.output import emit_json, terminal_safe
from strongroom.schedule.spec import system_zone
from strongroom.services.configs import BackupConfig
from strongroom.services.schedules import ScheduleState, Task, check_states, next_due, scheduled_tasks, states
from strongroom.words import plural

MAX_COUNT = 1000


def rfc3339(moment: datetime, zone) -> str:
    return moment.astimezone(zone).isoformat(timespec="seconds")


def local_text(moment: datetime, zone) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _state_doc(state: ScheduleState, now: datetime, zone, count: int) -> dict:
    slots = next_due(state, now, count)
    schedule = state.schedule
    return {**schedule.to_doc(), "id": schedule.id, "description": schedule.describe(),
            "last_slot": rfc3339(state.last_slot, zone) if state.last_slot else None,
            "next_due": rfc3339(slots[0].start_at, zone),
            "due_now": slots[0].start_at <= now,
            "next": [{"slot": rfc3339(s.time, zone), "start": rfc3339(s.start_at, zone)} for s in slots],
            "next_local": local_text(slots[0].start_at, zone)}


def schedule_docs(catalog, cfg: BackupConfig, count: int = 1, now: datetime | None = None) -> list[dict]:
    """Each backup schedule of `cfg` as shown by `config show`: its stored
    rules, a description and the next `count` starts."""
    zone = system_zone()
    now = now or datetime.fromtimestamp(time.time(), timezone.utc)
    return [_state_doc(state, now, zone, count) for state in states(catalog, cfg, zone)]


def check_schedule_docs(catalog, cfg: BackupConfig, now: datetime | None = None) -> list[dict]:
    """Each check schedule of `cfg`, as `schedule_docs`, with the subset its checks read."""
    zone = system_zone()
    now = now or datetime.fromtimestamp(time.time(), timezone.utc)
    return [{**_state_doc(state, now, zone, 1), "subset": subset}
            for state, subset in check_states(catalog, cfg, zone)]


KIND_WORDS = {"incremental": "backup", "check": "check", "dr-test": "DR test"}


def task_doc(task: Task, now: datetime, zone, count: int = 1) -> dict:
    """One scheduled task as `schedule list --json` prints it: whose it is
    (`config`, or `plan` for a DR test), its kind and its schedule."""
    owner = {"plan": task.name} if task.kind == "dr-test" else {"config": task.name}
    extra = {"subset": task.subset} if task.subset else {}
    return {**owner, "kind": task.kind, **_state_doc(task.state, now, zone, count), **extra}


@click.group()
def schedule() -> None:
    """When backups, checks and DR tests are due."""


@schedule.command("list")
@manage_options
def schedule_list(m: Manage) -> None:
    """List every schedule with its next due time.

    Backups and checks of the configurations, tests of the DR plans; each
    row says its kind."""
    zone = system_zone()
    now = datetime.fromtimestamp(time.time(), timezone.utc)
    with m.manager() as manager:
        rows = [(task, task_doc(task, now, zone)) for task in scheduled_tasks(manager.catalog, zone)]
    if m.json:
        for _, doc in rows:
            emit_json({"type": "schedule", **doc})
        emit_json({"type": "summary", "count": len(rows)})
        return
    print(f"{'Config or plan':20}  {'Kind':8}  {'Next due':25}  Schedule")
    for task, doc in rows:
        what = doc["description"] + (f"; reads {doc['subset']} of the packs" if task.subset else "")
        print(f"{terminal_safe(task.name)[:20]:20}  {KIND_WORDS.get(task.kind, task.kind):8}  "
              f"{doc['next_local']:25}  {terminal_safe(what)}")
    print(plural(len(rows), "schedule"))


@schedule.command("next")
@manage_options
@click.argument("name", required=False)
@click.option("--count", type=click.IntRange(1, MAX_COUNT), default=5, show_default=True,
              help="How many due times to show per configuration.")
def schedule_next(m: Manage, name, count) -> None:
    """Show the next due times (of configuration or DR plan NAME, or all)."""
    now = datetime.fromtimestamp(time.time(), timezone.utc)
    zone = system_zone()
    with m.manager() as manager:
        if name and manager.catalog.get_config(name) is None and manager.catalog.get_plan(name) is None:
            manager.get_config(name)  # the one-line error of an unknown configuration
        tasks = [t for t in scheduled_tasks(manager.catalog, zone) if not name or t.name == name]
        owners = list(dict.fromkeys((t.kind == "dr-test", t.name) for t in tasks))
        found = []
        for owner in owners:
            slots = [(slot, task) for task in tasks if ((task.kind == "dr-test", task.name) == owner)
                     for slot in next_due(task.state, now, count)]
            slots.sort(key=lambda pair: (pair[0].start_at, pair[1].state.schedule.id))
            found.extend(slots[:count])
    if name and not found and not m.json:
        print(f"{terminal_safe(name)} has no schedule: add one with "
              f"`strongroom config edit {terminal_safe(name)} --schedule SPEC`")
    if m.json:
        for slot, task in found:
            owner = {"plan": task.name} if task.kind == "dr-test" else {"config": task.name}
            emit_json({"type": "slot", **owner, "kind": task.kind, "schedule": task.state.schedule.id,
                       "slot": rfc3339(slot.time, zone), "start": rfc3339(slot.start_at, zone),
                       "due_now": slot.start_at <= now, "priority": slot.priority})
        emit_json({"type": "summary", "count": len(found)})
        return
    for slot, task in found:
        when = "due now" if slot.start_at <= now else local_text(slot.start_at, zone)
        print(f"{when:25}  {terminal_safe(task.name)[:20]:20}  {KIND_WORDS.get(task.kind, task.kind):8}  "
              f"{terminal_safe(task.state.schedule.text)}")


COMMANDS = [schedule]
