"""Applications built on the SDK and the services: the ``clipsearch`` command, the gateway, the
search page, the load tester and the demo (catalog, trained model, ``make demo``).

Nothing below this package is imported by the SDK, the server kit or the services
(``make lint`` checks it: see ``[tool.importlinter]`` in pyproject.toml).
"""
