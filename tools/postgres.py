"""Start a throwaway PostgreSQL server (tests, benchmarks): initdb + pg_ctl in a directory, on a free loopback
port, trust auth for one user. initdb refuses to run as root, so as root the server runs as the `postgres`
user the Debian package creates."""
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from tools.broker import free_port
from tools.system_deps import find_pg_bin as find_bin

READY_TIMEOUT_S = 30.0
USER = "wisp"


class Postgres:
    def __init__(self, root, port, as_user):
        self.root, self.port, self._as_user = Path(root), port, as_user
        self.url = f"postgresql://{USER}@127.0.0.1:{port}/postgres"

    def _run(self, *argv, **kw):
        prefix = ["runuser", "-u", self._as_user, "--"] if self._as_user else []
        return subprocess.run(prefix + list(argv), capture_output=True, text=True, **kw)

    def stop(self, remove=False):
        """Stop the server; remove=True also deletes its directory (some 40 MB of data files)."""
        if (self.root / "data" / "postmaster.pid").exists():
            self._run(find_bin("pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop", timeout=30)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(root, port=None):
    """A running server on 127.0.0.1:port (free port when None); its .url, .stop()."""
    initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
    if not (initdb and pg_ctl):
        raise RuntimeError("PostgreSQL is not installed: `sudo apt-get install postgresql` (or run `make setup`)")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    as_user = None
    if os.geteuid() == 0:
        as_user = "postgres"
        pw = pwd.getpwnam(as_user)
        os.chown(root, pw.pw_uid, pw.pw_gid)
        os.chmod(root, 0o700)
        # the user must reach the directory through its parents (a 0700 temp dir is only root's)
        for parent in root.parents:
            if parent == Path("/") or parent.stat().st_mode & 0o001:
                continue
            os.chmod(parent, parent.stat().st_mode | 0o001)
    pg = Postgres(root, port or free_port(), as_user)
    data = root / "data"
    done = pg._run(initdb, "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync", timeout=120)
    if done.returncode:
        raise RuntimeError(f"initdb failed: {done.stderr.strip()}")
    opts = (f"-c listen_addresses=127.0.0.1 -c port={pg.port} -c unix_socket_directories={root} "
            "-c fsync=off -c max_connections=100")
    done = pg._run(pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-o", opts, "-w",
                   "-t", str(int(READY_TIMEOUT_S)), "start", timeout=READY_TIMEOUT_S + 10)
    if done.returncode:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {done.stderr.strip()} {log[-1000:]}")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while pg._run(find_bin("pg_isready") or "pg_isready", "-h", "127.0.0.1", "-p", str(pg.port)).returncode:
        if time.monotonic() > deadline:
            raise RuntimeError("PostgreSQL did not accept connections")
        time.sleep(0.1)
    return pg
