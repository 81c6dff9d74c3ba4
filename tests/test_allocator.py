"""The training commands restart once on tcmalloc, before their heavy imports: same PID, command line and exit status;
glibc on request; never for --help or under a debugger, tracer or profiler; children get the user's LD_PRELOAD."""

import os
import subprocess
import sys

from asr_finetune.training.allocator import find_tcmalloc

# A stand-in entry script: prints its PID and argv, and which allocator it runs on, inside run_cli's main.
# A stand-in entry script, shaped like asr_finetune.cli.commands: the allocator first, then main under run_cli.
SCRIPT = """
import os, subprocess, sys
if "--traced" in sys.argv:
    sys.settrace(lambda *args: None)
from asr_finetune.training.allocator import allocator_in_use, restart_with_tcmalloc
print("started", os.getpid(), flush=True)
restart_with_tcmalloc()
from asr_finetune.cli.run import run_cli
from asr_finetune.errors import UsageError

def main():
    print("main", os.getpid(), sys.argv[1:], allocator_in_use(), flush=True)
    child = subprocess.run(["sh", "-c", 'echo "child LD_PRELOAD=[$LD_PRELOAD]"'], capture_output=True, text=True)
    print(child.stdout.strip(), flush=True)
    if "--fail" in sys.argv:
        raise UsageError("bad flag")

run_cli(main)
"""


def run_script(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASR_FINETUNE_MALLOC")}
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=120,
                          env={**environment, **env})


def test_the_install_provides_tcmalloc() -> None:
    assert find_tcmalloc() is not None, "scripts/install.sh installs libtcmalloc-minimal4"


def test_a_script_restarts_once_on_tcmalloc_with_its_pid_and_arguments() -> None:
    proc = run_script("--flag", "value with spaces")
    assert proc.returncode == 0, proc.stderr
    started = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("started")]
    mains = [line for line in proc.stdout.splitlines() if line.startswith("main")]
    assert len(started) == 2 and started[0] == started[1]  # the process image was replaced, not forked
    assert len(mains) == 1
    assert f"main {started[0]} ['--flag', 'value with spaces'] tcmalloc (" in mains[0]


def test_a_child_of_a_restarted_process_restarts_itself() -> None:
    # the marker names the PID that restarted, so a process started by one (a launcher's rank) is not taken for it
    proc = run_script("--flag", ASR_FINETUNE_MALLOC_RESTARTED="1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("started") == 2
    assert "tcmalloc (" in proc.stdout


def test_exit_status_survives_the_restart() -> None:
    proc = run_script("--fail")
    assert proc.returncode == 2
    assert "bad flag" in proc.stderr


def test_a_script_run_inside_another_program_does_not_restart_it() -> None:
    # as runpy (the console commands, tests) runs a script: sys.argv is the script's, not the process's
    code = "import sys; sys.argv = ['script.py', '--flag']; exec(open(0).read())"
    proc = subprocess.run([sys.executable, "-c", code], input=SCRIPT, capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("started") == 1
    assert "glibc malloc" in proc.stdout


def test_system_malloc_on_request() -> None:
    proc = run_script("--flag", ASR_FINETUNE_MALLOC="system")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("started") == 1
    assert "glibc malloc" in proc.stdout


def test_an_unknown_allocator_is_refused_by_name_with_a_usage_status() -> None:
    proc = run_script("--flag", ASR_FINETUNE_MALLOC="jemalloc")
    assert proc.returncode == 2
    assert "ASR_FINETUNE_MALLOC='jemalloc'" in proc.stderr and "tcmalloc" in proc.stderr


def test_children_inherit_the_users_ld_preload_not_tcmalloc() -> None:
    proc = run_script("--flag")
    assert proc.returncode == 0, proc.stderr
    assert "tcmalloc (" in proc.stdout and "child LD_PRELOAD=[]" in proc.stdout
    other = "/usr/lib/x86_64-linux-gnu/libm.so.6"  # a preload of the user's own stays in place
    kept = run_script("--flag", LD_PRELOAD=other)
    assert kept.returncode == 0, kept.stderr
    assert "tcmalloc (" in kept.stdout and f"child LD_PRELOAD=[{other}]" in kept.stdout


def test_help_does_not_restart() -> None:
    proc = run_script("--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("started") == 1 and "glibc malloc" in proc.stdout


def test_a_traced_process_is_not_restarted() -> None:
    proc = run_script("--traced")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("started") == 1 and "glibc malloc" in proc.stdout


def test_pdb_breakpoints_survive(tmp_path) -> None:
    # `python -m pdb script`: a breakpoint past the allocator step is reached in the first process image
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    line = SCRIPT.splitlines().index("run_cli(main)") + 1
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASR_FINETUNE_MALLOC")}
    proc = subprocess.run([sys.executable, "-m", "pdb", str(script), "--flag"], input=f"b {line}\nc\nc\nq\n",
                          capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert f"script.py({line})" in proc.stdout and proc.stdout.count("started ") == 1, proc.stdout
