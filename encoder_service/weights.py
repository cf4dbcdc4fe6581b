"""Which weights a model name comes with: the shipped demo checkpoint, or none (standard library only).

Shared by the settings (defaults and checks before torch is imported) and the model loader.
"""

from __future__ import annotations

from pathlib import Path

#: The model `make demo` serves; its checkpoint ships in the package.
DEMO_MODEL = "clipsearch-demo"
DEMO_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "clipsearch-demo.pt"
#: The only way to ask for random weights (tests, benchmarks); logged as a warning.
RANDOM_WEIGHTS = "random"
#: Pillow's default ``Image.MAX_IMAGE_PIXELS`` (a 3-channel image this size is ~256 MiB).
PILLOW_MAX_IMAGE_PIXELS = 89_478_485
