import subprocess
import sys
from pathlib import Path

from .conftest import REPO


def test_ruff_check_and_format():
    ruff = Path(sys.executable).with_name("ruff")
    for args in (["check"], ["format", "--check"]):
        r = subprocess.run(
            [str(ruff), *args, "src", "tests", "benchmarks"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stdout + r.stderr
