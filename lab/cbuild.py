"""A lesson's C floor, built with the system's cc on first use and cached.

The binary is cached outside the repository, under ~/.cache/daemonlab (or
$XDG_CACHE_HOME/daemonlab), named by a hash of the source, the compiler and
its flags, so an edited source or another compiler builds afresh and a
stale binary is never timed. It is built into a temporary name and renamed
into place: two runs building at once both end with a whole binary (rename
is atomic).

Where there is no compiler, or a header or library the floor needs is
missing, the LabError says what to install in one line.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from lab.errors import LabError, last_line

__all__ = ["build"]

#: A compile takes a second or two; this bounds one that hangs.
BUILD_TIMEOUT_S = 60.0

#: What cc says when a header or a library is not installed.
MISSING = ("No such file or directory", "cannot find -l")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "daemonlab"


def build(source: Path, name: str, flags: Sequence[str] = (), install: str = "") -> Path:
    """The compiled `source`, built now if needed (cc -O2 ... flags); LabError saying
    why when it cannot be. `install` is the line that brings what `flags` need."""
    cc = shutil.which(os.environ.get("CC") or "cc")
    if cc is None:
        raise LabError(f"no compiler: install a C compiler (`apt-get install gcc`) for the {name}")
    digest = hashlib.sha256(source.read_bytes() + cc.encode() + " ".join(flags).encode())
    target = _cache_dir() / f"{source.stem}-{digest.hexdigest()[:16]}"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        built = subprocess.run(
            [cc, "-O2", "-o", str(partial), str(source), *flags],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
        if built.returncode != 0:
            said = built.stderr.splitlines()
            missing = [line for line in said if any(words in line for words in MISSING)]
            if missing and install:
                raise LabError(f"the {name} needs `{install}`: {missing[0].strip()}")
            last = last_line(built.stderr, "no message")
            raise LabError(f"the {name} did not compile with {cc}: {last}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target
