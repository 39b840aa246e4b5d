"""`strongroom dr`: disaster-recovery plans kept in the catalog, and the reports of their runs.

The plan commands (create, list, show, delete, report) are here; running and
rehearsing a plan, the recovery kit and recovery from nothing add their own
subcommands from their modules (the list at the bottom).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import shlex
import sys
from datetime import datetime

import click

from strongroom.atomic import replaced_whole
from strongroom.cli.cmd_manage import Manage, manage_options
from strongroom.cli.output import emit_json, local_time, terminal_safe
from strongroom.dr.durations import format_seconds, parse_seconds
from strongroom.dr.plan import Hook, Plan, Step, plan_from_order
from strongroom.dr.report import FORMATS, TREND_RUNS, plan_run_from_dict, render_runs
from strongroom.dr.results import PlanRun
from strongroom.dr.run_document import RunDocumentError
from strongroom.errors import StrongroomError, UsageError
from strongroom.words import plural

MAX_PLAN_FILE = 1024 * 1024


@click.group()
def dr() -> None:
    """Disaster-recovery plans: run, rehearse, report.

    A plan restores configurations in order into a target base, with
    commands before and after each step, and targets for RTO and RPO.
    Plans are kept in the catalog and, sealed, in the repositories they use.
    """


def _store(manager):
    from strongroom.dr.store import PlanStore
    return PlanStore(manager.backup_service)


def _duration(value: str | None, what: str) -> float | None:
    return None if value is None else parse_seconds(value, what)


def _read_plan_file(path: str) -> Plan:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PLAN_FILE + 1)
    except OSError as e:
        raise UsageError(f"plan file {path}: {e.strerror or e}") from None
    if len(data) > MAX_PLAN_FILE:
        raise UsageError(f"plan file {path}: larger than {MAX_PLAN_FILE // 1024} KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"plan file {path}: not UTF-8 text") from None
    return Plan.from_toml(text)


# ---- create ------------------------------------------------------------------------------


@dr.command("create")
@manage_options
@click.argument("name", required=False)
@click.option("--order", "order", multiple=True, metavar="CONFIGS",
              help="The configurations to restore, in order, comma-separated (e.g. database,app,files).")
@click.option("--target-base", type=click.Path(file_okay=False),
              help="Each step restores below this directory, into a folder named after its configuration.")
@click.option("--rto", metavar="DURATION", help="Target RTO: plan start to the last step verified (e.g. 30m).")
@click.option("--rpo", metavar="DURATION", help="Target RPO: the oldest a restored point may be (e.g. 24h).")
@click.option("--continue-on-error", is_flag=True, help="Go on with the next step when one fails (else stop).")
@click.option("--no-verify", is_flag=True, help="Do not check every restored file against its point.")
@click.option("--file", "plan_file", type=click.Path(dir_okay=False),
              help="Read the whole plan from this TOML file (as `dr show NAME --toml` prints it).")
@click.option("--test-schedule", metavar="SPEC",
              help="When the daemon rehearses it: \"0 3 * * 0\", \"every 1w\" (as config --schedule).")
@click.option("--replace", is_flag=True, help="Replace the plan of the same name with this one.")
def dr_create(m: Manage, name, order, target_base, rto, rpo, continue_on_error, no_verify, plan_file,
              test_schedule, replace) -> None:
    """Create DR plan NAME from --order and --target-base, or --file."""
    if plan_file:
        given = [flag for flag, value in (("--order", order), ("--target-base", target_base), ("--rto", rto),
                                          ("--rpo", rpo), ("--continue-on-error", continue_on_error),
                                          ("--no-verify", no_verify)) if value]
        if given:
            raise UsageError(f"--file holds the whole plan: give {given[0]} in the file instead")
        plan = _read_plan_file(plan_file)
        if name is not None and name != plan.name:
            raise UsageError(f"the plan file names its plan {plan.name!r}, not {name!r}")
        if test_schedule:  # given beside the file, it takes the place of the file's `schedule`
            plan = dataclasses.replace(plan, schedule=test_schedule)
    else:
        if not name:
            raise UsageError("give the plan a NAME (or a plan file with --file)")
        configs = [c.strip() for group in order for c in group.split(",") if c.strip()]
        if not configs:
            raise UsageError("give the configurations to restore with --order, e.g. --order database,app,files")
        if not target_base:
            raise UsageError("give --target-base DIR: where the steps restore")
        plan = plan_from_order(name, configs, target_base, _duration(rto, "RTO"), _duration(rpo, "RPO"),
                               "continue" if continue_on_error else "stop", not no_verify, test_schedule)
    with m.manager() as manager:
        saved = _store(manager).save(plan, replace=replace)
    if m.json:
        emit_json({"type": "summary", "plan": saved.name, "version": saved.version,
                   "steps": [s.name for s in saved.steps], "configs": list(saved.configs),
                   "target_base": saved.target_base, "rto_target": saved.rto, "rpo_target": saved.rpo,
                   "test_schedule": saved.schedule, "replace": replace})
        return
    print(f"{'replaced' if replace else 'created'} DR plan {terminal_safe(saved.name)} (version {saved.version}): "
          f"{plural(len(saved.steps), 'step')}, {', '.join(terminal_safe(s.name) for s in saved.steps)}"
          + _rehearse_hint(saved.name, "; "))


def _rehearse_hint(name: str, before: str) -> str:
    """How to rehearse the plan, when this build can."""
    if "test" not in dr.commands:
        return ""
    return f"{before}rehearse it with `strongroom dr test {_shell_word(name)}`"


def _shell_word(name: str) -> str:
    """A plan name as a person types it in a shell ("Production DR" quoted)."""
    return terminal_safe(shlex.quote(name))


# ---- list and show -------------------------------------------------------------------------


def _last_of_mode(docs: list[dict], mode: str) -> dict | None:
    """The newest record of a mode: its id, verdict and times (the record is checked whole). A newer
    record whose mode cannot be told makes the answer "unreadable", never an older run or "never"."""
    for doc in reversed(docs):
        known = isinstance(doc, dict) and doc.get("mode") in ("run", "test")
        if known and doc.get("mode") != mode:
            continue
        try:
            run = plan_run_from_dict(doc)
        except RunDocumentError as e:
            plan = doc.get("plan") if isinstance(doc, dict) else None
            print(f"strongroom: warning: a recorded run of plan {terminal_safe(str(plan)[:100])} does not read: {e}",
                  file=sys.stderr)
            ident = doc.get("id") if isinstance(doc, dict) else None
            return {"id": terminal_safe(str(ident)[:64]), "verdict": "unreadable", "started": None,
                    "finished": None, "rto_seconds": None}
        return {"id": run.id, "verdict": run.verdict, "started": _iso(run.started),
                "finished": _iso(run.finished), "rto_seconds": run.rto_seconds}
    return None


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _plan_doc(plan: Plan) -> dict:
    return {**plan.to_doc(), "version": plan.version, "updated": plan.updated,
            "configs": list(plan.configs)}


@dr.command("list")
@manage_options
def dr_list(m: Manage) -> None:
    """List the DR plans, their targets and their last test."""
    with m.manager() as manager:
        store = _store(manager)
        rows = []
        for plan in store.list():
            # Only the newest record of each mode is read: a plan tested hourly for years
            # has a history that a listing must not load.
            rows.append((plan, _last_of_mode(store.runs(plan.name, last=1, mode="test"), "test"),
                         _last_of_mode(store.runs(plan.name, last=1, mode="run"), "run")))
    if m.json:
        for plan, test, run in rows:
            emit_json({"type": "plan", "name": plan.name, "version": plan.version,
                       "steps": [s.name for s in plan.steps], "configs": list(plan.configs),
                       "rto_target": plan.rto, "rpo_target": plan.rpo, "last_test": test, "last_run": run})
        emit_json({"type": "summary", "count": len(rows)})
        return
    print(f"{'Name':24}  {'Steps':22}  {'RTO':6}  {'RPO':6}  Last test")
    for plan, test, _ in rows:
        steps = ",".join(s.name for s in plan.steps)
        steps = steps if len(steps) <= 22 else steps[:21] + "…"
        last = "never" if test is None else \
            f"{test['verdict']} {local_time(test['finished'].replace('Z', '+00:00'))}" if test["finished"] else \
            test["verdict"]
        print(f"{terminal_safe(plan.name):24}  {terminal_safe(steps):22}  {format_seconds(plan.rto):6}  "
              f"{format_seconds(plan.rpo):6}  {last}")
    print(plural(len(rows), "plan"))


def _hook_line(hook: Hook) -> str:
    return f"[{hook.mode}, timeout {format_seconds(hook.timeout)}] {terminal_safe(hook.command)}"


def _step_lines(number: int, plan: Plan, step: Step) -> list[str]:
    rpo = plan.step_rpo(step)
    rpo_text = "-" if rpo is None else format_seconds(rpo) + ("" if step.rpo is not None else " (the plan's)")
    name = terminal_safe(step.name) + ("" if step.name == step.config else f" (configuration "
                                                                          f"{terminal_safe(step.config)})")
    lines = [f"  {number}. {name} -> {terminal_safe(step.target_in(plan.target_base))}",
             f"     point: {terminal_safe(step.point.describe())}; RPO {rpo_text}; "
             f"RTO {format_seconds(step.rto)}"]
    if step.include:
        lines.append(f"     include: {', '.join(terminal_safe(p) for p in step.include)}")
    if step.database:
        lines.append(f"     database: {terminal_safe(step.database)}")
    lines += [f"     before: {_hook_line(h)}" for h in step.before]
    lines += [f"     after:  {_hook_line(h)}" for h in step.after]
    return lines


@dr.command("show")
@manage_options
@click.argument("name")
@click.option("--toml", "as_toml", is_flag=True, help="Print the plan as a TOML file `dr create --file` reads.")
def dr_show(m: Manage, name, as_toml) -> None:
    """Show DR plan NAME: its steps, targets, points and commands."""
    if as_toml and m.json:
        raise UsageError("give --toml or --json, not both")
    with m.manager() as manager:
        plan = _store(manager).get(name)
    if as_toml:
        sys.stdout.write(plan.to_toml())
        return
    if m.json:
        emit_json({"type": "plan", **_plan_doc(plan)})
        return
    rows = [("plan", f"{terminal_safe(plan.name)} (version {plan.version})"),
            ("description", terminal_safe(plan.description) or "-"),
            ("target base", terminal_safe(plan.target_base)), ("RTO target", format_seconds(plan.rto)),
            ("RPO target", format_seconds(plan.rpo)), ("on failure", plan.on_failure),
            ("verify", "every restored file" if plan.verify else "no"),
            ("test schedule", terminal_safe(plan.schedule) if plan.schedule else "-"),
            ("updated", local_time(datetime.fromtimestamp(plan.updated).astimezone()) if plan.updated else "-")]
    for label, value in rows:
        print(f"{label + ':':13} {value}")
    print(f"steps ({len(plan.steps)}):")
    for number, step in enumerate(plan.steps, 1):
        print("\n".join(_step_lines(number, plan, step)))


@dr.command("delete")
@manage_options
@click.argument("name")
def dr_delete(m: Manage, name) -> None:
    """Delete DR plan NAME; the records of its runs stay."""
    with m.manager() as manager:
        store = _store(manager)
        store.delete(name)
        kept = store.count_runs(name)
    if m.json:
        emit_json({"type": "summary", "deleted": name, "runs_kept": kept})
        return
    print(f"deleted DR plan {terminal_safe(name)}; its {plural(kept, 'recorded run')} stay as history")


# ---- report ------------------------------------------------------------------------------------


def _recorded_runs(chosen_docs: list[dict], tests: list[dict], plan: str) -> tuple[list[PlanRun], list[PlanRun]]:
    """The runs chosen (each must read: a report never passes over a run) and the tests before them
    (history; one that does not read is left out of the trend, with a warning). `tests` are the
    plan's newest tests, the chosen ones among them: every test not chosen is older than those."""
    chosen_ids = {d.get("id") for d in chosen_docs if isinstance(d, dict)}
    # Only tests make the trend; a record whose mode does not read is read (and warned of), not passed over.
    earlier_docs = [d for d in tests if not (isinstance(d, dict) and (d.get("mode") == "run"
                                                                      or d.get("id") in chosen_ids))][-TREND_RUNS:]
    chosen = []
    for doc in chosen_docs:
        try:
            chosen.append(plan_run_from_dict(doc))
        except RunDocumentError as e:
            raise RunDocumentError(f"a recorded run of plan {plan!r} does not read: {e}") from None
    history = []
    for doc in earlier_docs:
        try:
            history.append(plan_run_from_dict(doc))
        except RunDocumentError as e:
            print(f"strongroom: warning: an earlier run of plan {terminal_safe(plan)} is left out of the trend: "
                  f"{e}", file=sys.stderr)
    return chosen, history


def _write_atomically(path: str, text: str) -> None:
    """A report file, written whole or not at all (readable by others: it holds no secret)."""
    with replaced_whole(path, 0o644, prefix=".report-") as f:
        f.write(text.encode("utf-8"))


@dr.command("report")
@manage_options
@click.argument("name")
@click.option("--last", type=click.IntRange(1, 1000), default=1, show_default=True, metavar="N",
              help="Report the last N recorded runs (newest last).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="md (the default), json or html.")
@click.option("--output", type=click.Path(dir_okay=False), help="Write the report to this file, not stdout.")
def dr_report(m: Manage, name, last, fmt, output) -> None:
    """Report the newest recorded run of DR plan NAME (or the last N)."""
    if m.json and not output and fmt not in (None, "json"):
        raise UsageError(f"--json prints the report as JSON: give --output FILE for a {fmt} report")
    fmt = fmt or ("json" if m.json else "md")
    with m.manager() as manager:
        store = _store(manager)
        docs = store.runs(name, last=last)  # the history beyond what is shown is never read
        if not docs:
            store.get(name)  # no plan of that name: a usage error
            raise StrongroomError(f"DR plan {name!r} has no recorded run yet" + _rehearse_hint(name, ": "))
        tests = store.runs(name, last=last + TREND_RUNS, mode="test")
    chosen, history = _recorded_runs(docs, tests, name)
    text = render_runs(chosen, fmt, history)
    if not output:
        sys.stdout.write(text)
        return
    _write_atomically(output, text)
    if m.json:
        emit_json({"type": "summary", "plan": name, "format": fmt, "output": os.path.abspath(output),
                   "runs": [r.id for r in chosen], "verdict": chosen[-1].verdict})
    else:
        print(f"wrote the {fmt} report of {plural(len(chosen), 'run')} of DR plan {terminal_safe(name)} "
              f"to {terminal_safe(output)} (newest: {chosen[-1].verdict})")


COMMANDS = [dr]

# ---- subcommands other modules add to `dr` ----------------------------------------------------
# (module, the click commands it exports). A module not in this tree yet is left out.
_EXTENSIONS = (
    ("strongroom.cli.cmd_dr_run", ("dr_run", "dr_test")),
    ("strongroom.cli.cmd_dr_recover", ("dr_kit", "dr_recover")),
)

def _add_extensions() -> None:
    for module_name, names in _EXTENSIONS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as missing:
            if missing.name != module_name:
                raise
            continue
        for name in names:
            dr.add_command(getattr(module, name))

_add_extensions()
