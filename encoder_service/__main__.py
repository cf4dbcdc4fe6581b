"""``python -m encoder_service [flags]``: the same server as ``clipsearch serve encoder``."""

import sys

from clipsearch.server.serve import main
from encoder_service.settings import EncoderSettings

if __name__ == "__main__":
    sys.exit(main("python -m encoder_service", EncoderSettings, "encoder_service.server:run"))
