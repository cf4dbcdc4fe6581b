"""Build hook: every build (wheel, sdist install, editable) writes clipsearch/aio.py first.

The asyncio clients are generated from the sync ones by scripts/gen_aio.py; the generated
module is a build product, not source, so it is made wherever the package is built.
Everything else about the package is in pyproject.toml.
"""

import runpy
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithAio(build_py):
    def run(self) -> None:
        generator = runpy.run_path(str(Path(__file__).resolve().parent / "scripts" / "gen_aio.py"))
        generator["main"]([])
        super().run()


setup(cmdclass={"build_py": BuildPyWithAio})
