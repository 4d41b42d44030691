"""The harness's own process does not import the heavy libraries in stages that do not use them.

inspect-ai and torch take seconds to import; the evaluation, which needs them, runs in a child process. What is
checked is an event (the module is in sys.modules or not), not a time.
"""

import os
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("torch", "inspect_ai", "transformers", "datasets", "matplotlib")

# The CLI and the modules behind `ptb run`'s harness-side stages, grids, results and the store.
HARNESS_MODULES = (
    "posttrainbench.cli.main",
    "posttrainbench.executors.pipeline",
    "posttrainbench.executors.grid",
    "posttrainbench.executors.baseline",
    "posttrainbench.executors.worker",
    "posttrainbench.workspace.prepare",
    "posttrainbench.workspace.collect",
    "posttrainbench.agents.launch",
    "posttrainbench.integrity.check",
    "posttrainbench.scoring.leaderboard",
    "posttrainbench.store",
    "posttrainbench.evaluation.runner",
)


def _heavy_after(code: str) -> list[str]:
    script = textwrap.dedent(code) + textwrap.dedent(f"""
        import sys
        print("heavy:", *(m for m in {HEAVY!r} if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1].split()[1:]


@pytest.mark.parametrize("module", HARNESS_MODULES)
def test_harness_module_imports_no_heavy_library(module):
    assert _heavy_after(f"import {module}") == []


def test_help_and_a_bad_input_error_import_no_heavy_library():
    heavy = _heavy_after("""
        from posttrainbench.cli.main import app
        for argv in (["--help"], ["run", "--help"], ["grid", "--help"], ["run", "--no-such-flag"]):
            try:
                app(argv, standalone_mode=False)
            except BaseException:
                pass
    """)
    assert heavy == []


def test_the_check_sees_a_heavy_module():
    assert _heavy_after("import sys; sys.modules['torch'] = sys") == ["torch"]


def test_grid_status_reads_the_store_without_loading_the_pipeline(tmp_path):
    """`ptb grid status` is a read: it loads the store and the grid records, not the stages behind a run."""
    script = textwrap.dedent("""
        import sys
        from posttrainbench.cli.main import app
        app(["grid", "status"], standalone_mode=False)
        print("loaded:", *(m for m in ("posttrainbench.executors.pipeline", "aiohttp") if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "PTB_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split()[1:] == []
