"""Run a measurement on an earlier commit of this repository, for before/after figures measured in one run on
one machine. The commit's tree is unpacked into a temporary directory (git archive: no checkout, no worktree)
and `python -m bench.<module> --measure` runs there, with that tree first on the import path, so its bridge
and firmware are the ones measured; it prints one JSON line, returned here."""
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# the last commit before request sizes, tool schemas and one-round actions were worked on
BASELINE = "45b698f"


def unpack(commit: str, into: Path) -> Path:
    """The tree of `commit` of this repository, unpacked into `into`/tree (git archive: no checkout, no
    worktree); its path."""
    got = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit], capture_output=True)
    if got.returncode:
        raise SystemExit(f"the before figures need commit {commit} of this repository's git history: "
                         f"{got.stderr.decode(errors='replace').strip()}")
    (into / "tree.tar").write_bytes(got.stdout)
    with tarfile.open(into / "tree.tar") as tar:
        tar.extractall(into / "tree", filter="data")
    return into / "tree"


def measure_at(commit: str, script: Path, timeout_s: float = 900) -> dict:
    """`python <script> --measure` with the tree of `commit` first on the import path; its JSON output."""
    with tempfile.TemporaryDirectory(prefix="wisp-before-") as tmp:
        old = unpack(commit, Path(tmp))
        env = {**os.environ, "PYTHONPATH": str(old), "WISP_BENCH_TREE": str(old)}
        done = subprocess.run([sys.executable, str(script), "--measure"], cwd=old, env=env, capture_output=True,
                              text=True, timeout=timeout_s)
        line = next((x for x in reversed(done.stdout.splitlines()) if x.startswith("{")), None)
        if done.returncode or line is None:
            raise SystemExit(f"measuring {commit} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return json.loads(line)


def tree() -> Path:
    """The repository tree being measured: an earlier commit's (see measure_at), or this one."""
    return Path(os.environ.get("WISP_BENCH_TREE", REPO))


def use_tree() -> None:
    """Put the measured tree first on sys.path (call before importing the bridge, tests or tools)."""
    sys.path.insert(0, str(tree()))
