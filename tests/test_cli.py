"""The CLI shell: lazy loading, global options, one error path with exit codes."""
from __future__ import annotations

import resource
import subprocess
import sys

from fx_cli import __version__


def _modules_after(args: list[str]) -> set[str]:
    code = ("import sys\nfrom fx_cli.cli.main import cli\n"
            f"try:\n    cli({args!r}, prog_name='fx')\nexcept SystemExit:\n    pass\n"
            "print('\\n'.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return set(out.stdout.split())


def test_help_imports_no_tensorflow_and_no_grpc():
    modules = _modules_after(["--help"])
    assert "click" in modules  # the probe really ran
    assert "tensorflow" not in modules and "keras" not in modules and "torch" not in modules
    assert "grpc" not in modules


def test_non_training_commands_import_no_tensorflow(tmp_path):
    ws = tmp_path / "ws"
    for args in (["workspace", "create", "--prefix", str(ws), "--template", "keras/digits"],
                 ["plan", "print", "-p", str(ws / "plan" / "plan.yaml")],  # validates the Keras runner's settings
                 ["plan", "--help"], ["aggregator", "--help"], ["collaborator", "--help"], ["model", "--help"]):
        modules = _modules_after(args)
        assert "fx_cli.runners.keras_runner" in modules or args[0] != "plan" or args[1] != "print"
        assert "tensorflow" not in modules and "keras" not in modules, args
    assert (ws / "plan" / "plan.yaml").exists()


def test_help_is_fast():
    best = min(_cpu_seconds([sys.executable, "-m", "fx_cli", "--help"]) for _ in range(3))
    # Interpreter start-up included; the target for fx itself is well under 0.5 s. CPU time, not wall-clock:
    # on a busy machine the wall-clock time of the same work grows with the load, its CPU time does not.
    assert best < 1.0, best


def _cpu_seconds(cmd: list[str]) -> float:
    """User + system CPU time of one run of ``cmd`` (a child process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, capture_output=True, check=True, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_version_option(fx):
    res = fx("--version")
    assert res.exit_code == 0 and __version__ in res.output


def test_unknown_command_is_a_usage_error_with_exit_2(fx):
    res = fx("warkspace")
    assert res.exit_code == 2
    assert "No such command" in res.all


def test_fx_error_prints_message_and_hint_and_exits_1(fx):
    res = fx("workspace", "create", "--prefix", "x", "--template", "nope/nope")
    assert res.exit_code == 1
    assert "unknown template 'nope/nope'" in res.stderr
    assert "numpy/synthetic" in res.stderr  # the hint lists the valid templates


def test_traceback_flag_reraises(tmp_path):
    out = subprocess.run([sys.executable, "-m", "fx_cli", "--traceback", "workspace", "create",
                          "--prefix", str(tmp_path / "w"), "--template", "nope"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "Traceback" in out.stderr and "FxError" in out.stderr


def test_python_m_fx_cli_works():
    out = subprocess.run([sys.executable, "-m", "fx_cli", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "workspace" in out.stdout


def test_every_command_defined_in_the_cli_modules_is_reachable_from_fx():
    import importlib
    import pkgutil

    import click

    import fx_cli.cli
    from fx_cli.cli.main import cli

    ctx = click.Context(cli)
    reachable = set()
    for group_name in cli.list_commands(ctx):
        group = cli.get_command(ctx, group_name)
        if not isinstance(group, click.Group):  # a top-level command such as `fx plot`
            reachable.add(id(group))
            continue
        for name in group.list_commands(ctx):
            reachable.add(id(group.get_command(ctx, name)))
    defined = []
    for info in pkgutil.iter_modules(fx_cli.cli.__path__):
        module = importlib.import_module(f"fx_cli.cli.{info.name}")
        defined += [(info.name, attr) for attr, obj in vars(module).items()
                    if type(obj) is click.Command and obj.callback.__module__ == module.__name__]
    unreachable = [f"{mod}:{attr}" for mod, attr in defined
                   if id(getattr(importlib.import_module(f"fx_cli.cli.{mod}"), attr)) not in reachable]
    assert defined and not unreachable


def test_file_system_errors_name_the_path_and_exit_1_without_a_traceback(fx, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    res = fx("workspace", "create", "--prefix", str(tmp_path / "afile" / "ws"), "--template", "no-op")
    assert res.exit_code == 1, res.all
    assert f"error: {tmp_path / 'afile' / 'ws'}: Not a directory" in res.stderr and "what to do:" in res.stderr
    assert "Traceback" not in res.all
