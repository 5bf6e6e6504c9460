"""Reading a role's start-up inputs (plan, cols.yaml, data.yaml) so that every problem is reported at once."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from fx_cli.errors import FxError, NotAWorkspace, PlanError


def gather(*steps: Callable[[], Any]) -> list[Any]:
    """Run every step; raise one ``PlanError`` listing the problems of all of them (None for a failed step)."""
    results: list[Any] = []
    problems: list[str] = []
    for step in steps:
        try:
            results.append(step())
        except NotAWorkspace:
            raise  # nothing else is worth listing: the command ran in the wrong folder
        except PlanError as err:
            problems.extend(err.problems)
            results.append(None)
        except FxError as err:
            problems.append(err.message)
            results.append(None)
    if problems:
        raise PlanError(problems, "fix the files and keys named above, then start again")
    return results


def aggregator_inputs(plan_path: Path, cols_path: Path) -> tuple[Any, list[str]]:
    """The plan and the authorized collaborators, or one error listing every problem in both."""
    from fx_cli.plan import load_plan
    from fx_cli.plan.participants import read_cols

    def cols() -> list[str]:
        names = read_cols(cols_path)
        if not names:
            raise PlanError([f"{cols_path} lists no collaborators (certify collaborators with "
                             "`fx collaborator certify`, which adds them, or list them there)"])
        return names

    plan, names = gather(lambda: load_plan(plan_path), cols)
    return plan, names
