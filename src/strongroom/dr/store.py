"""Where plans and the evidence of their runs are kept.

A plan lives in the catalog and, sealed, in every repository one of its
steps uses, beside the configurations (`Repository.save_managed_record`), so
a new machine reads it back from the target alone. The newest version wins.
A run (a recovery or a rehearsal) is recorded the same way, so the evidence
that a plan worked survives the machine it ran on.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from strongroom.dr.plan import Plan
from strongroom.dr.results import PlanRun
from strongroom.errors import StrongroomError, UsageError

if TYPE_CHECKING:
    from strongroom.repo.repository import Repository
    from strongroom.services.backup_service import BackupService
    from strongroom.services.configs import BackupConfig

log = logging.getLogger(__name__)


class PlanStore:
    """Plans and runs, in the catalog and in the repositories."""

    def __init__(self, service: BackupService) -> None:
        self.service = service
        self.catalog = service.catalog

    # ---- plans -------------------------------------------------------------------------

    def save(self, plan: Plan, replace: bool = False) -> Plan:
        """Store a plan (a new version of it with `replace`); returns it with its time.

        Refused with UsageError: a name taken (without `replace`), a step
        naming a configuration that does not exist. The sealed copies go to
        every repository its steps use; one that cannot be written stops the
        save before the catalog changes, so the catalog never holds a
        version the repositories lack."""
        if not replace and self.catalog.get_plan(plan.name) is not None:
            raise UsageError(f"a DR plan named {plan.name!r} exists already (use replace to change it)")
        configs = self._configs_of(plan)
        updated = max(time.time(), self._newest_time(plan.name) + 1e-6)
        saved = Plan.from_doc(plan.to_doc(), updated=updated)
        for config in _distinct_repositories(configs):
            self._write_to(config, "plan", saved.name, saved.to_doc())
        self.catalog.put_plan(saved.name, saved.to_doc(), saved.version, updated)
        return saved

    def get(self, name: str) -> Plan:
        """The plan named `name`; UsageError when there is none."""
        row = self.catalog.get_plan(name)
        if row is None:
            raise UsageError(f"no DR plan named {name!r}")
        return Plan.from_doc(row["doc"], updated=row["updated"])

    def list(self) -> list[Plan]:
        """Every plan in the catalog, by name."""
        return [Plan.from_doc(row["doc"], updated=row["updated"]) for row in self.catalog.list_plans()]

    def delete(self, name: str) -> None:
        """Forget a plan: the catalog's copy, and (as a removal record) the repositories'.
        Its runs stay as history. A repository that cannot be reached is passed over
        with a warning: the catalog forgets the plan all the same."""
        plan = self.get(name)
        for config in _distinct_repositories(self._known_configs(plan)):
            try:
                self._write_to(config, "plan", name, None)
            except StrongroomError as e:
                log.warning("plan %s: could not record its removal in the repository of %s: %s",
                            name, config.name, e)
        self.catalog.delete_plan(name)

    # ---- runs --------------------------------------------------------------------------

    def record_run(self, run: PlanRun) -> None:
        """Keep a finished run in the catalog and, sealed, in every repository its
        steps restored from. A repository that cannot be written is logged, not
        raised: the run happened, and the catalog has it."""
        doc = run.to_dict()
        self.catalog.add_dr_run(run.id, run.plan, run.mode, run.verdict, run.started.timestamp(),
                                run.finished.timestamp(), doc)
        names = {s.config for s in run.steps if s.snapshot}
        configs = [c for c in self.service.list_configs() if c.name in names]
        for config in _distinct_repositories(configs):
            try:
                self._write_to(config, "run", run.id, doc)
            except StrongroomError as e:
                log.warning("DR run %s: could not record it in the repository of %s: %s", run.id, config.name, e)

    def runs(self, plan: str | None = None, last: int | None = None, mode: str | None = None) -> list[dict]:
        """Recorded runs (of one plan, or all; of one mode, or both), oldest first; with `last`,
        only the newest that many are read. Each is `PlanRun.to_dict()`."""
        return [row["doc"] for row in self.catalog.list_dr_runs(plan, last, mode)]

    def count_runs(self, plan: str) -> int:
        """How many runs of `plan` are recorded (none of them read)."""
        return self.catalog.count_dr_runs(plan)

    # ---- what a repository holds ---------------------------------------------------------

    @staticmethod
    def plans_in_repository(repo: Repository) -> list[Plan]:
        """The newest version of each plan stored in `repo` (removed ones left out;
        one that does not read as a plan is passed over with a warning)."""
        plans = []
        for name, (when, doc) in sorted(repo.load_managed_records("plan").items()):
            try:
                plan = Plan.from_doc(doc, updated=when)
            except (UsageError, TypeError, ValueError) as e:
                log.warning("a stored DR plan %r does not read as a plan: %s", name[:100], e)
                continue
            if plan.name == name:
                plans.append(plan)
        return plans

    @staticmethod
    def runs_in_repository(repo: Repository) -> list[dict]:
        """Every run recorded in `repo`, oldest first."""
        runs = [doc for _, (_, doc) in repo.load_managed_records("run").items()]
        return sorted(runs, key=lambda d: (str(d.get("started", "")), str(d.get("id", ""))))

    # ---- inside ----------------------------------------------------------------------------

    def _configs_of(self, plan: Plan) -> list[BackupConfig]:
        configs = []
        for name in plan.configs:
            if self.catalog.get_config(name) is None:
                raise UsageError(f"plan {plan.name}: no backup configuration named {name!r}")
            configs.append(self.service.get_config(name))
        return configs

    def _known_configs(self, plan: Plan) -> list[BackupConfig]:
        return [self.service.get_config(n) for n in plan.configs if self.catalog.get_config(n) is not None]

    def _newest_time(self, name: str) -> float:
        row = self.catalog.get_plan(name)
        return float(row["updated"]) if row else 0.0

    def _write_to(self, config: BackupConfig, kind: str, name: str, doc: dict | None) -> None:
        repo = self.service.open_repository(config)
        repo.save_managed_record(kind, name, doc)


def _distinct_repositories(configs: list[BackupConfig]) -> list[BackupConfig]:
    """One configuration per repository (two configurations may share one)."""
    seen: set[tuple] = set()
    out = []
    for config in configs:
        key = (config.target_client_id or "local", config.target_path)
        if key not in seen:
            seen.add(key)
            out.append(config)
    return out
