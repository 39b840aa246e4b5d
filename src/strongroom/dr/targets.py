"""Where a real run may restore: the checks made of a plan's targets before
its first step, on real paths (symlinks resolved), not only as written.

Two steps whose targets are one place, or nested, once symlinks are
followed would write over each other; a target that is, or lies inside, a
local repository of the plan would put restored files among the
repository's. Each is refused with a UsageError before anything is written.
"""

from __future__ import annotations

import os

from strongroom.dr.plan import Plan
from strongroom.errors import StrongroomError, UsageError
from strongroom.services.backup_service import BackupService


def refuse_shared_targets(plan: Plan, targets: list[str]) -> None:
    """Two steps whose targets are one place, or one inside the other, once symlinks are
    resolved: the second restore would write over the first. The plan itself only
    compares the paths as written."""
    real = [os.path.realpath(t) for t in targets]
    for i, a in enumerate(real):
        for j in range(i + 1, len(real)):
            b = real[j]
            if a == b or b.startswith(a.rstrip("/") + "/") or a.startswith(b.rstrip("/") + "/"):
                raise UsageError(f"plan {plan.name}: the targets of steps {plan.steps[i].name} ({targets[i]}) "
                                 f"and {plan.steps[j].name} ({targets[j]}) are one place once symlinks are "
                                 "followed; give each step its own target")


def refuse_targets_in_repositories(service: BackupService, plan: Plan, targets: list[str]) -> None:
    """A target that is, or lies inside, the local repository of one of the plan's
    configurations (a target base that is the repositories' folder, and a step named
    after its configuration): the restore would write its files among the repository's."""
    repositories = []
    for name in plan.configs:
        try:
            config = service.get_config(name)
        except StrongroomError:
            continue  # its step fails when its turn comes
        if config.is_local and config.target_path:
            repositories.append(os.path.realpath(config.target_path))
    for step, target in zip(plan.steps, targets):
        real = os.path.realpath(target)
        for repository in repositories:
            if real == repository or real.startswith(repository.rstrip("/") + "/"):
                raise UsageError(f"step {step.name}: its target {target} is inside the repository "
                                 f"{repository}; give a target outside every repository")
