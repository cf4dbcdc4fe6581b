"""``python -m index_service [flags]``: the same server as ``clipsearch serve index``."""

import sys

from clipsearch.server.serve import main
from index_service.settings import IndexSettings

if __name__ == "__main__":
    sys.exit(main("python -m index_service", IndexSettings, "index_service.server:run"))
