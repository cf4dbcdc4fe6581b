"""Settings modules and the shared flag helpers import with the standard library only.

The CLI builds its parser from them before torch or faiss (or even grpc) is needed.
"""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.functional


@pytest.mark.parametrize(
    "module",
    [
        "clipsearch._options",
        "clipsearch.server.settings",
        "clipsearch.server.serve",
        "clipsearch.apps.ui.settings",
        "clipsearch.apps.cli",
        "encoder_service.settings",
        "index_service.settings",
        "clipsearch.apps.gateway.settings",
        "clipsearch.apps.cli.bulk_ingest",
    ],
)
def test_settings_import_without_heavy_packages(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "names = ('grpc', 'numpy', 'torch', 'faiss', 'google.protobuf')\n"
        "heavy = sorted(m for m in names if m in sys.modules)\n"
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"{module} pulls in {done.stdout.strip()}"
