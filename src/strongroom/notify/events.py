"""The events strongroom notifies about, and the words of their messages.

An event is a fact about one configuration (or DR plan): a run failed
after its retries, finished with warnings, succeeded; the configuration is
overdue; its target will be full soon; a verification or DR test failed or
passed; a real DR run finished or failed; damage was found. Each kind raises or clears one *condition*
(failing, warnings, overdue, ...); the policy (policy.py) decides from the
condition's state whether a message goes out at all.

Texts say what happened, to which configuration, and what to do. They are
built from the configuration's name and strongroom's own error lines, which
never hold a secret; an error is cut to one bounded line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from strongroom.notify.base import one_line


@dataclass(frozen=True)
class Kind:
    condition: str
    raises: bool            # True: the condition holds; False: it is cleared
    severity: str
    # A clearing event that is news on its own (a DR test passed) is sent even
    # when nothing was wrong before; a run that succeeded, as usual, is not.
    news_when_clear: bool = False
    ping: str | None = None  # what a heartbeat makes of it


KINDS: dict[str, Kind] = {
    "run_failed": Kind("failing", True, "error", ping="fail"),
    "run_warning": Kind("warnings", True, "warning", ping="success"),
    "run_succeeded": Kind("failing", False, "info", ping="success"),
    "run_started": Kind("running", True, "info", ping="start"),
    "overdue": Kind("overdue", True, "warning"),
    "target_full_soon": Kind("target_full", True, "warning"),
    "target_ok": Kind("target_full", False, "info"),
    "verification_failed": Kind("verification", True, "error"),
    "verification_passed": Kind("verification", False, "info", news_when_clear=True),
    "dr_test_failed": Kind("dr_test", True, "error"),
    "dr_test_passed": Kind("dr_test", False, "info", news_when_clear=True),
    "dr_run_failed": Kind("dr_run", True, "error"),
    "dr_run_passed": Kind("dr_run", False, "info", news_when_clear=True),
    "damage_found": Kind("damage", True, "error"),
}

# A success also ends these conditions: a configuration that backs up again
# is no longer overdue, and a clean run has no warnings.
ALSO_CLEARS = {"run_succeeded": ("warnings", "overdue"), "run_warning": ("failing", "overdue"),
               "verification_passed": ("damage",)}


@dataclass(frozen=True)
class Event:
    kind: str
    config: str
    time: float
    error: str | None = None     # the failure or warning line
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}")


def run_failed(config: str, time: float, error: str, attempts: int) -> Event:
    return Event("run_failed", config, time, _first_line(error), {"attempts": attempts})


def run_finished(config: str, time: float, warning: str | None, snapshot_id: str | None) -> Event:
    details = {"snapshot_id": snapshot_id} if snapshot_id else {}
    if warning:
        return Event("run_warning", config, time, _first_line(warning), details)
    return Event("run_succeeded", config, time, None, details)


def validation_result(report, time: float) -> Event:
    """The event of a ValidationReport: a sound point passed; problems found are damage."""
    details = {"snapshot_id": report.backup_id, "deep": report.deep}
    if report.ok:
        return Event("verification_passed", report.config_name, time, None, details)
    if report.problems:
        more = len(report.problems) - 1
        first = report.problems[0] + (f" (and {more} more)" if more else "")
        return Event("damage_found", report.config_name, time, _first_line(first), details)
    return Event("verification_failed", report.config_name, time, "the check did not pass", details)


def dr_test_result(run) -> Event | None:
    """The event of a finished DR run (a `PlanRun`): a rehearsal's verdict, or
    None for a real recovery (the person running it is watching). The
    plan's configurations are in `details["configs"]`, for the channels'
    configuration filter."""
    return _dr_result(run, "test")


def dr_run_result(run) -> Event | None:
    """The event of a finished real recovery (a `PlanRun` of mode "run"): failed
    is an error, anything else news (whoever started it may not be watching
    when it ends); None for a rehearsal (see `dr_test_result`)."""
    return _dr_result(run, "run")


def _dr_result(run, mode: str) -> Event | None:
    """`dr_{mode}_failed` or `dr_{mode}_passed` for a finished PlanRun of `mode`, else None."""
    if run.mode != mode:
        return None
    configs = sorted({s.config for s in getattr(run, "steps", ()) if getattr(s, "config", None)})
    details = {"run": run.id, "verdict": run.verdict, "configs": configs}
    when = run.finished.timestamp()
    if run.verdict == "fail":
        return Event(f"dr_{mode}_failed", run.plan, when, _first_line("; ".join(run.reasons) or "verdict fail"),
                     details)
    return Event(f"dr_{mode}_passed", run.plan, when, None, details)


def _first_line(text: str) -> str:
    # An unexpected error carries a traceback after its first line: not for a message.
    return one_line((text or "unknown error").splitlines()[0] if text else "unknown error")


def what_happened(event: Event) -> tuple[str, str]:
    """(title, what happened) of an event that raises or is news."""
    c, e, d = event.config, event.error, event.details
    attempts = d.get("attempts")
    tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}" if attempts else ""
    return {
        "run_failed": (f"backup of {c} failed", f"The backup of configuration {c} failed{tries}: {e}."),
        "run_warning": (f"backup of {c} finished with warnings",
                        f"The backup of configuration {c} finished with warnings: {e}."),
        "run_succeeded": (f"backup of {c} succeeded", f"The backup of configuration {c} succeeded."),
        "run_started": (f"backup of {c} started", f"The backup of configuration {c} started."),
        "overdue": (f"{c} is overdue", f"Configuration {c} has no successful backup "
                                       f"{d.get('since', 'within its schedule')}."),
        "target_full_soon": (f"the target of {c} fills up",
                             f"The target of configuration {c} will be full in about "
                             f"{d.get('days', '?')} days at its current growth."),
        "target_ok": (f"the target of {c} has room", f"The target of configuration {c} no longer fills up soon."),
        "verification_failed": (f"verification of {c} failed",
                                f"Verifying the backups of configuration {c} failed: {e}."),
        "verification_passed": (f"verification of {c} passed",
                                f"The backups of configuration {c} were verified and are sound."),
        "dr_test_failed": (f"DR test of {c} failed", f"The disaster-recovery test of plan {c} failed: {e}."),
        "dr_test_passed": (f"DR test of {c} passed", f"The disaster-recovery test of plan {c} passed."),
        "dr_run_failed": (f"DR run of {c} failed", f"The disaster recovery of plan {c} failed: {e}."),
        "dr_run_passed": (f"DR run of {c} finished",
                          f"The disaster recovery of plan {c} finished with verdict {d.get('verdict', '?')}."),
        "damage_found": (f"damage found in {c}", f"Damage was found in the repository of configuration {c}: {e}."),
    }[event.kind]


ADVICE = {
    "run_failed": "Look at `strongroom jobs {c}` for the error, fix its cause, then run "
                  "`strongroom backup --config {c}`.",
    "run_warning": "Look at `strongroom jobs {c}`: some files may be missing from the backup.",
    "overdue": "Check that the machine is on and the daemon runs, then `strongroom backup --config {c}`.",
    "target_full_soon": "Free space with `strongroom config edit {c} --keep-... --retention-after-run prune`, "
                        "or give the target more room.",
    "verification_failed": "Run `strongroom check --config {c}` and repair what it reports before you need "
                           "these backups.",
    "dr_test_failed": "Open the report with `strongroom dr report {c}` and fix the failed step.",
    "dr_run_failed": "Open the report with `strongroom dr report {c}`, fix the failed step and run it again.",
    "damage_found": "Run `strongroom check --config {c} --read-data` and `strongroom repair` as it advises; "
                    "make a new backup soon.",
}


# The warning of a run whose backup is good but whose copy to the second target failed.
COPY_FAILED = "copy to the second target failed"


def advice(event: Event) -> str:
    if event.kind == "run_warning" and (event.error or "").startswith(COPY_FAILED):
        return (f"The backup itself is good. Fix the second target (`strongroom config show {event.config}`); "
                f"the next run copies every point it is missing.")
    text = ADVICE.get(event.kind)
    return text.format(c=event.config) if text else ""


CONDITION_NAMES = {"failing": "failing backups", "warnings": "backup warnings", "overdue": "being overdue",
                   "target_full": "a filling target", "verification": "failed verification",
                   "dr_test": "a failed DR test", "dr_run": "a failed DR run", "damage": "damage", "running": "running"}
