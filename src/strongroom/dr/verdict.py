"""The verdict of a run or a rehearsal, and its reasons in words.

A pure function of the step results and the times: `fail` when a step failed
or was cancelled, when a restored file did not verify, when a recovery took
longer than its RTO target (the plan's, from plan start to the last step
done, or a step's own), when a snapshot used was older than its RPO target
when the plan started, or when a step restored no file at all (its include
matches nothing, or its snapshot is empty: a recovery that brings nothing
back recovers nothing); `pass-with-warnings` when only warnings remain, and
always when the plan does not verify (nothing then says the files restored
are the ones backed up); else `pass`. A snapshot dated after the plan
started has no age to judge: a failure under an RPO target, else a warning.
A test must never pass by restoring a stale point because today's backup
failed, so RPO is judged in real runs and rehearsals alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from strongroom.dr.durations import format_seconds
from strongroom.dr.results import StepResult


FUTURE_SLACK = 300.0  # seconds a snapshot may be dated ahead of this clock (clocks of two hosts differ)


def duration_words(seconds: float) -> str:
    """A duration for a reason: `2d4h`, `45s`, and below a second `0.001s` rather than `0.0s`."""
    return f"{seconds:.3g}s" if seconds < 1 else format_seconds(seconds)


def judge(steps: Sequence[StepResult], rto_seconds: float, rto_target: float | None,
          verify: bool) -> tuple[str, tuple[str, ...]]:
    """(verdict, reasons) for these step results."""
    failures: list[str] = []
    warnings: list[str] = []
    for step in steps:
        who = f"step {step.name}"
        if step.status == "failed":
            failures.append(f"{who}: failed: {step.messages[0]}" if step.messages else f"{who}: failed")
        elif step.status == "cancelled":
            failures.append(f"{who}: cancelled")
        elif step.status == "skipped":
            failures.append(f"{who}: skipped ({step.messages[0]})" if step.messages else f"{who}: skipped")
        elif verify and not step.verified:
            failures.append(f"{who}: not every restored file was verified")
        elif step.files == 0:
            failures.append(f"{who}: restored no file" + (" (its include matches nothing in the snapshot)"
                                                         if step.include else " (the snapshot holds none)"))
        if step.status == "warning":
            warnings += [f"{who}: {m}" for m in step.messages] or [f"{who}: warnings"]
        if step.rto_target is not None and step.status != "skipped" \
                and step.duration_seconds > step.rto_target:
            failures.append(f"{who}: took {duration_words(step.duration_seconds)}, longer than its RTO target "
                            f"{duration_words(step.rto_target)}")
        if step.rpo_seconds is not None and step.rpo_seconds < -FUTURE_SLACK and step.status != "skipped":
            # Dated after the plan started: a wrong clock (or a crafted snapshot). Its age is unknown,
            # so it can meet no RPO target, and "latest" may have chosen it over a true newest.
            future = (f"{who}: snapshot {(step.snapshot or '')[:8]} is dated "
                      f"{duration_words(-step.rpo_seconds)} after the plan started (a clock is wrong): "
                      "its age cannot be told")
            (failures if step.rpo_target is not None else warnings).append(future)
        if step.rpo_target is not None and step.rpo_seconds is not None and step.rpo_seconds > step.rpo_target \
                and step.status != "skipped":
            drawn = f" (drawn {step.rule})" if step.rule.startswith("random") else ""
            failures.append(f"{who}: snapshot {step.snapshot[:8]} is {duration_words(step.rpo_seconds)} old, "
                            f"older than the RPO target {duration_words(step.rpo_target)}{drawn}")
    if rto_target is not None and rto_seconds > rto_target:
        failures.append(f"the plan took {duration_words(rto_seconds)} to recover, longer than the RTO target "
                        f"{duration_words(rto_target)}")
    if not verify and any(step.status in ("passed", "warning") for step in steps):
        warnings.append("verification is off in this plan: no restored file was checked against its snapshot")
    if failures:
        return "fail", tuple(failures + warnings)
    if warnings:
        return "pass-with-warnings", tuple(warnings)
    return "pass", ()
