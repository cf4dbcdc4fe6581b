"""``clipsearch ui``: the visual search page, a thin client of the SDK.

``settings``, ``probe`` and ``page`` (the page's logic over the SDK) need only the base
install, so the CLI and ``make demo`` can import them; ``app`` (Starlette) and
``server`` (uvicorn) need the ``clipsearch[ui]`` extra.
"""
