"""Another commit to compare with (--compare-with REF), checked out in a temporary git worktree.

A change must often show that it costs no throughput or memory against the code before
it, and two separate runs on a shared machine differ by more than the change does. So
REF is checked out into `git worktree add --detach` in a temporary directory (removed
however the run ends) and its worker runs in the same run as the current one, from the
same .venv interpreter with PYTHONPATH pointing at the worktree. "Current" is the
repository's working tree, uncommitted edits included.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import WORK_TREE
from harness.processes import CURRENT, BenchError, Code, bench_env
from streams.settings import Settings

__all__ = ["ref_worktree", "run_order"]


def git(*args: str) -> str:
    """git in this repository; its stdout, or BenchError with what git said."""
    done = subprocess.run(["git", "-C", str(WORK_TREE), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"git {' '.join(args)}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done.stdout.strip()


@contextlib.contextmanager
def ref_worktree(ref: str | None):
    """REF checked out in a temporary detached worktree for its worker; removed however the run ends."""
    if ref is None:
        yield None
        return
    sha = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    path = Path(tempfile.mkdtemp(prefix="freshstream-bench-ref-"))
    try:
        git("worktree", "add", "--detach", str(path), sha)
        code = Code(f"REF {ref} ({sha[:10]})", path, "ref")
        check_imports(code)
        yield code
    finally:
        remove_worktree(path)


def remove_worktree(path: Path) -> None:
    """`git worktree remove --force`; should git refuse (half made), delete it and prune the record."""
    try:
        git("worktree", "remove", "--force", str(path))
    except BenchError:
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run(["git", "-C", str(WORK_TREE), "worktree", "prune"], capture_output=True)


def check_imports(code: Code) -> None:
    """Fail early unless a child started as the workers are imports its packages from code.root.

    The .venv holds an editable install of the repository root: PYTHONPATH must win over it,
    or "REF" would silently be the current tree. (cwd: not a tree, as for the workers.)
    """
    script = "import connectors, streams; print(connectors.__file__); print(streams.__file__)"
    done = subprocess.run([sys.executable, "-c", script], env=bench_env(Settings(), code.root),
                          cwd=tempfile.gettempdir(), capture_output=True, text=True)
    found = done.stdout.split()
    if done.returncode != 0 or len(found) != 2 or not all(
            Path(p).resolve().is_relative_to(code.root.resolve()) for p in found):
        raise BenchError(f"a worker for {code.label} would import {found or done.stderr.strip()[-500:]}, "
                         f"not the packages under {code.root}")


def run_order(ref, repeats: int, current=(CURRENT,)) -> list:
    """REF, current, REF, current, ...: neither always gets the cooler machine or the emptier broker.

    Several current subjects (e.g. one configuration and another) take turns within each
    repeat, reversed every other one: REF, A, B, REF, B, A, ...
    """
    order = []
    for n in range(repeats):
        turn = list(current) if n % 2 == 0 else list(reversed(current))
        order += ([ref] if ref is not None else []) + turn
    return order
