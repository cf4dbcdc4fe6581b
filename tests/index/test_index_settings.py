"""IndexSettings: flags, environment defaults, and errors naming the flag."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from index_service.settings import IndexSettings

pytestmark = pytest.mark.unit


def _parse(argv, monkeypatch=None, env=None):
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    parser = argparse.ArgumentParser()
    IndexSettings.add_arguments(parser)
    return IndexSettings.from_args(parser.parse_args(argv))


def test_defaults_and_flags():
    assert _parse([]) == IndexSettings()
    settings = _parse(["--port", "0", "--data-dir", "/tmp/x", "--no-reflection", "--grace-s", "2.5"])
    assert (settings.port, settings.data_dir, settings.no_reflection, settings.grace_s) == (
        0,
        Path("/tmp/x"),
        True,
        2.5,
    )


def test_environment_supplies_defaults_and_flags_win(monkeypatch):
    env = {
        "CLIPSEARCH_INDEX_PORT": "6000",
        "CLIPSEARCH_INDEX_NO_REFLECTION": "true",
        "CLIPSEARCH_INDEX_METRICS_PORT": "9100",
    }
    settings = _parse([], monkeypatch, env)
    assert (settings.port, settings.no_reflection, settings.metrics_port) == (6000, True, 9100)
    assert _parse(["--port", "7000"], monkeypatch, env).port == 7000


@pytest.mark.parametrize(
    ("argv", "env", "flag"),
    [
        (["--port", "70000"], {}, "--port"),
        (["--search-threads", "zero"], {}, "--search-threads"),
        ([], {"CLIPSEARCH_INDEX_GRACE_S": "-1"}, "--grace-s"),
        ([], {"CLIPSEARCH_INDEX_NO_REFLECTION": "maybe"}, "--no-reflection"),
    ],
)
def test_bad_values_fail_naming_the_flag(monkeypatch, capsys, argv, env, flag):
    with pytest.raises(SystemExit):
        _parse(argv, monkeypatch, env)
    assert flag in capsys.readouterr().err
