"""dr run, dr test: a plan run for real, or rehearsed into a scratch area.

On a terminal a line per step and two bars (the plan, the step); with
--json every event as a JSON line and, last, one summary object. Exit 0 when
the verdict is pass or pass-with-warnings, 1 otherwise. Ctrl-C or SIGTERM
cancels: the step in flight stops cleanly, the summary is printed, and the
command exits 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import click

from strongroom.cli.cmd_manage import Manage, manage_options
from strongroom.cli.output import emit_json, human_duration, human_size, local_time, terminal_safe
from strongroom.errors import StrongroomError, UsageError
from strongroom.words import plural

REPORT_FORMATS = {".md": "md", ".markdown": "md", ".json": "json", ".html": "html", ".htm": "html"}
PASSING = ("pass", "pass-with-warnings")


class PlanView:
    """The events of a run, drawn: bars and a line per step, or JSON lines."""

    def __init__(self, json_mode: bool, quiet: bool) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self._lock = threading.Lock()
        self.progress = None
        if not json_mode and not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn
            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                     TextColumn("{task.percentage:>3.0f}%"),
                                     TextColumn("{task.fields[line]}", markup=False),
                                     console=Console(stderr=True, soft_wrap=True), transient=True)
            self.progress.start()
            self.plan_task = self.progress.add_task("plan", total=1.0, line="")
            self.step_task = self.progress.add_task("step", total=1.0, line="")

    def __call__(self, event: dict) -> None:
        with self._lock:
            if self.json_mode:
                emit_json(event)
                return
            kind = event.get("message_type") or event.get("type")
            if kind == "dr_step":
                self._step(event)
            elif kind == "dr_status" and self.progress is not None:
                line = f"step {event['step_index'] + 1} of {event['steps']}, " \
                       f"{human_size(event['bytes_done'])} of {human_size(event['total_bytes'])}"
                if event.get("eta"):
                    line += f", {human_duration(event['eta'])} left"
                self.progress.update(self.plan_task, completed=event["percent"] / 100, line=line)
            elif kind == "status" and self.progress is not None:
                fraction = event.get("percent_done") or 0.0
                self.progress.update(self.step_task, completed=fraction,
                                     line=f"{event.get('files_done', 0)} of {event.get('total_files', 0)} files")
            elif kind == "error":
                self._say(f"error: {terminal_safe(event.get('path') or event.get('item'))}: "
                          f"{terminal_safe(event.get('message'))}", err=True)
            elif kind == "warning":
                self._say(f"warning: {terminal_safe(event.get('message'))}", err=True)

    def _step(self, event: dict) -> None:
        name = terminal_safe(event["step"])
        if event["action"] == "start":
            if self.progress is not None:
                self.progress.update(self.step_task, description=f"step {name}", completed=0.0, line="")
            return
        line = f"step {name}: {event['status']}, {plural(event['files'], 'file')}, {human_size(event['bytes'])}"
        if event["files_verified"]:
            line += f", {event['files_verified']} verified"
        line += f", {human_duration(event['duration_seconds'])}"
        self._say(line)
        for message in event.get("messages", [])[:5]:
            self._say(f"  {terminal_safe(message)}")

    def _say(self, text: str, err: bool = False) -> None:
        if self.quiet and not err:
            return
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr if err else sys.stdout, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _report_format(path: str | None) -> str | None:
    """The report's format from its file name, and a folder it can be written in;
    refused before anything runs, not after a rehearsal of an hour."""
    if path is None:
        return None
    fmt = REPORT_FORMATS.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise UsageError(f"--report {path}: name it .md, .json or .html to choose the format")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"--report {path}: there is no folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--report {path}: the folder {folder} cannot be written")
    return fmt


def _write_report(dr, run, fmt: str, path: str) -> None:
    """The run's report, with the plan's recorded runs before it as the trend."""
    from strongroom.dr.report import TREND_RUNS, render
    from strongroom.dr.run_document import plan_run_from_dict

    history = []
    for doc in dr.store.runs(plan=run.plan, last=TREND_RUNS):
        try:
            history.append(plan_run_from_dict(doc))
        except StrongroomError as e:  # not a point of the trend, and said so
            print(f"strongroom: warning: a recorded run of plan {terminal_safe(run.plan)} is left out of "
                  f"the trend: {terminal_safe(e)}", file=sys.stderr)
    text = render(run, fmt, history)
    from strongroom.cli.cmd_dr import _write_atomically
    _write_atomically(path, text)


def _follow(m: Manage, name: str, mode: str, report: str | None = None, trigger: str = "manual",
            **options) -> int:
    from strongroom.dr.manager import DisasterRecoveryManager

    fmt = _report_format(report)
    signalled: list[int] = []

    def on_signal(signum, _frame) -> None:
        signalled.append(signum)  # the loop below cancels: nothing here takes a lock

    with m.manager() as manager:
        dr = DisasterRecoveryManager(manager.backup_service)
        view = PlanView(m.json, m.quiet)
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            if mode == "run":
                run_id = dr.execute_dr_plan(name, progress=view, trigger=trigger, **options)
            else:
                run_id = dr.test_dr_plan(name, progress=view, wait=False, trigger=trigger, **options)
            cancelled = False
            while not dr.done(run_id, 0.1):
                if signalled and not cancelled:
                    cancelled = dr.cancel(run_id)
            run = dr.wait(run_id)
        finally:
            view.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
        unwritten = None
        if fmt is not None:
            try:
                _write_report(dr, run, fmt, report)
            except (OSError, StrongroomError) as e:  # the run is done and recorded: its summary still comes last
                unwritten = f"the report {report} could not be written: " + \
                    (f"{e.strerror or e}" if isinstance(e, OSError) else str(e))
    if unwritten is not None:
        if m.json:
            emit_json({"message_type": "error", "item": report, "message": unwritten})
        print(f"strongroom: error: {terminal_safe(unwritten)}", file=sys.stderr)
    if m.json:
        emit_json(run.summary())
    else:
        _print_summary(run)
    if signalled:
        print("strongroom: interrupted: the plan was cancelled", file=sys.stderr)
        return 128 + signalled[0]
    return 0 if run.verdict in PASSING and unwritten is None else 1


def _print_summary(run) -> None:
    what = "test" if run.mode == "test" else "run"
    print(f"plan {terminal_safe(run.plan)} ({what}, version {run.plan_version}): {run.verdict}, "
          f"RTO {human_duration(run.rto_seconds)}")
    for step in run.steps:
        if step.snapshot:
            print(f"  {terminal_safe(step.name)}: snapshot {step.snapshot[:8]} of {local_time(step.snapshot_time)}"
                  f" ({step.rule}), {step.status}")
        else:
            print(f"  {terminal_safe(step.name)}: {step.status}")
    for reason in run.reasons:
        print(f"  - {terminal_safe(reason)}")
    if run.mode == "test" and run.scratch_kept:
        print(f"kept the scratch area {terminal_safe(run.target_base)}")


@click.command("run")
@manage_options
@click.argument("name")
@click.option("--target-base", type=click.Path(file_okay=False),
              help="Restore every step below DIR (absolute targets too), not the plan's base.")
@click.option("--at", help="In every step, the newest snapshot at or before this time.")
def dr_run(m: Manage, name, target_base, at) -> int:
    """Run plan NAME for real: its steps, in order, into their targets.

    Exit 0 when the verdict is pass or pass-with-warnings, 1 otherwise;
    130 or 143 when stopped by Ctrl-C or SIGTERM.
    """
    return _follow(m, name, "run", target_base=target_base, at=at)


@click.command("test")
@manage_options
@click.argument("name")
@click.option("--scratch", type=click.Path(file_okay=False),
              help="Restore into DIR (new or empty), not a new temporary folder.")
@click.option("--keep", is_flag=True, help="Keep what was restored in the scratch area.")
@click.option("--report", "report", type=click.Path(dir_okay=False),
              help="Write the report to FILE (.md, .json or .html).")
@click.option("--read-data-subset", "subset", metavar="N%",
              help="The check afterwards also reads this share of each repository's packs (besides those restored).")
def dr_test(m: Manage, name, scratch, keep, report, subset) -> int:
    """Rehearse plan NAME in a scratch area: restore, verify, measure.

    Every step restores below the scratch area; the real targets are never touched. Exit 0 when the verdict is pass or
    pass-with-warnings, 1 otherwise; 130 or 143 when stopped.
    """
    from strongroom.dr.repocheck import share_of
    share = share_of(subset) if subset is not None else None
    return _follow(m, name, "test", report, scratch=scratch, keep=keep, read_data_subset=share)
