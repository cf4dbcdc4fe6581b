"""Shared fixtures. Suites add their own in tests/<suite>/conftest.py."""

from __future__ import annotations

import sys
from pathlib import Path

# Make `tests.harness` importable without installing tests as a package.
sys.path.insert(0, str(Path(__file__).resolve().parent))
