"""``fx plan``."""
from fx_cli.cli.lazy import lazy_group

plan = lazy_group("plan", "Initialise, print and freeze the federation plan.", {
    "initialize": "fx_cli.cli.plan_cmds:initialize",
    "print": "fx_cli.cli.plan_cmds:print_",
    "freeze": "fx_cli.cli.plan_cmds:freeze",
    "region": "fx_cli.cli.plan_cmds:region",
})
