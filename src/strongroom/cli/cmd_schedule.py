"""`strongroom schedule list|next`: when the configurations' schedules are due.

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
from strongroom.services.schedules import next_due, states
from strongroom.words import plural

MAX_COUNT = 1000


def rfc3339(moment: datetime, zone) -> str:
    return moment.astimezone(zone).isoformat(timespec="seconds")


def local_text(moment: datetime, zone) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def schedule_docs(catalog, cfg: BackupConfig, count: int = 1, now: datetime | None = None) -> list[dict]:
    """Each schedule of `cfg` as shown by `config show` and `schedule list`: its
    stored rules, a description and the next `count` starts."""
    zone = system_zone()
    now = now or datetime.fromtimestamp(time.time(), timezone.utc)
    out = []
    for state in states(catalog, cfg, zone):
        slots = next_due(state, now, count)
        schedule = state.schedule
        out.append({**schedule.to_doc(), "id": schedule.id, "description": schedule.describe(),
                    "last_slot": rfc3339(state.last_slot, zone) if state.last_slot else None,
                    "next_due": rfc3339(slots[0].start_at, zone),
                    "due_now": slots[0].start_at <= now,
                    "next": [{"slot": rfc3339(s.time, zone), "start": rfc3339(s.start_at, zone)} for s in slots],
                    "next_local": local_text(slots[0].start_at, zone)})
    return out


@click.group()
def schedule() -> None:
    """When the configurations' schedules are due."""


@schedule.command("list")
@manage_options
def schedule_list(m: Manage) -> None:
    """List every schedule with its next due time."""
    with m.manager() as manager:
        rows = [(cfg.name, doc) for cfg in manager.list_configs()
                for doc in schedule_docs(manager.catalog, cfg)]
    if m.json:
        for name, doc in rows:
            emit_json({"type": "schedule", "config": name, **doc})
        emit_json({"type": "summary", "count": len(rows)})
        return
    print(f"{'Config':20}  {'Next due':25}  Schedule")
    for name, doc in rows:
        print(f"{terminal_safe(name)[:20]:20}  {doc['next_local']:25}  {terminal_safe(doc['description'])}")
    print(plural(len(rows), "schedule"))


@schedule.command("next")
@manage_options
@click.argument("name", required=False)
@click.option("--count", type=click.IntRange(1, MAX_COUNT), default=5, show_default=True,
              help="How many due times to show per configuration.")
def schedule_next(m: Manage, name, count) -> None:
    """Show the next due times (of configuration NAME, or all)."""
    now = datetime.fromtimestamp(time.time(), timezone.utc)
    zone = system_zone()
    with m.manager() as manager:
        configs = [manager.get_config(name)] if name else manager.list_configs()
        found = []
        for cfg in configs:
            slots = [(slot, state) for state in states(manager.catalog, cfg, zone)
                     for slot in next_due(state, now, count)]
            slots.sort(key=lambda pair: (pair[0].start_at, pair[1].schedule.id))
            found.extend((cfg.name, slot, state) for slot, state in slots[:count])
    if name and not found and not m.json:
        print(f"configuration {terminal_safe(name)} has no schedule: add one with "
              f"`strongroom config edit {terminal_safe(name)} --schedule SPEC`")
    if m.json:
        for config_name, slot, state in found:
            emit_json({"type": "slot", "config": config_name, "schedule": state.schedule.id,
                       "slot": rfc3339(slot.time, zone), "start": rfc3339(slot.start_at, zone),
                       "due_now": slot.start_at <= now, "priority": slot.priority})
        emit_json({"type": "summary", "count": len(found)})
        return
    for config_name, slot, state in found:
        when = "due now" if slot.start_at <= now else local_text(slot.start_at, zone)
        print(f"{when:25}  {terminal_safe(config_name)[:20]:20}  {terminal_safe(state.schedule.id)}")


COMMANDS = [schedule]
