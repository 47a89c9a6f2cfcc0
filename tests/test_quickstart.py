"""The README quickstart, verbatim, in a fresh virtual environment (issue 15, item 1): ``.ci/quickstart``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs the git checkout")
def test_readme_quickstart_runs_in_a_fresh_virtual_environment() -> None:
    if not _pypi_reachable():
        pytest.skip("pip needs PyPI to install into a fresh virtual environment (no network here)")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "HARNESS_CACHE")}
    env.setdefault("OMP_NUM_THREADS", "2")
    done = subprocess.run([str(REPO / ".ci" / "quickstart")], env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| Average |" in done.stdout and "quickstart: ok (tox at" in done.stdout


def test_readme_quickstart_installs_the_test_command() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Quickstart", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(block) == 2 and "harness run " in block[0] and block[1] == "tox"
    install = block[0].split("&&")[0]
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    extra = install.split("[", 1)[1].split("]", 1)[0] if "[" in install else None
    assert extra is not None, f"the first command {install!r} installs no extra, so tox is not installed"
    line = next(line for line in pyproject.splitlines() if line.startswith(f"{extra} = ["))
    assert '"tox' in line
    assert "tox" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
