"""The one error family of fx: every failure a user can hit carries a hint."""
from __future__ import annotations


class FxError(Exception):
    """An error the user can act on: what happened, and what to do next."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class PlanError(FxError):
    """One or more problems in plan.yaml, cols.yaml or data.yaml, all reported at once."""

    def __init__(self, problems: list[str], hint: str | None = None) -> None:
        self.problems = list(problems)
        head = "the plan has 1 problem" if len(problems) == 1 else f"the plan has {len(problems)} problems"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in problems),
                         hint or "fix the keys named above and run the command again")


class ModelFileError(FxError):
    """A .pbuf model file that is missing, corrupt, truncated or inconsistent."""


class NotAWorkspace(FxError):
    """A command that needs a workspace was run in a folder that is not one."""

    def __init__(self, folder: str, missing: str = "plan/plan.yaml", plan_option: bool = True) -> None:
        super().__init__(f"{folder} is not an fx workspace: it has no {missing}",
                         "cd into a workspace folder (one made by `fx workspace create --prefix NAME` or "
                         "`fx workspace import --archive ZIP`) and run the command again"
                         + (", or name the plan with -p WORKSPACE/plan/plan.yaml" if plan_option else ""))


class Interrupted(FxError):
    """Ctrl-C (SIGINT) stopped a long-running command; the message says what was kept."""

    exit_code = 130  # the shell's convention for a process ended by SIGINT
