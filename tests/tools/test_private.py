"""Secret files (the API token, staged configs, images) are the owner's alone from their first
byte: never created readable by others and then narrowed."""
import os
import stat

from tools.private import write_private


def test_secret_files_are_0600_from_creation_even_with_a_permissive_umask(tmp_path):
    old = os.umask(0)  # what a careless shell might have: new files would be 0666
    try:
        path = tmp_path / ".wisp" / "api_token"
        seen = []
        real_open = os.open

        def watching_open(name, flags, mode=0o777, *a, **kw):
            seen.append(mode)  # the mode the file is created with, before any byte is written
            return real_open(name, flags, mode, *a, **kw)
        os.open = watching_open
        try:
            write_private(path, "s3cret-token")
        finally:
            os.open = real_open
        assert seen == [0o600]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "s3cret-token"
        path.chmod(0o644)  # an old world-readable file is replaced, not rewritten in place
        write_private(path, "new-token")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "new-token"
        assert [p.name for p in path.parent.iterdir()] == ["api_token"]  # no temporary left behind
    finally:
        os.umask(old)
