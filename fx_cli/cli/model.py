"""``fx model``."""
from fx_cli.cli.lazy import lazy_group

model = lazy_group("model", "Inspect and convert model files.", {
    "info": "fx_cli.cli.model_cmds:info",
    "save": "fx_cli.cli.model_cmds:save",
})
