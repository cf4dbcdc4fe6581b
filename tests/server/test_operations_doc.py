import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[2]


def test_flag_table_in_operations_doc_is_current() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "flag_table.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_every_server_shares_the_operations_flags() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    for command in ("serve encoder", "serve index", "serve gateway"):
        for flag in ("--tls-cert", "--token-file", "--insecure", "--metrics-port", "--log-format"):
            assert f"| `{command}` | `{flag}` |" in text, (command, flag)
