import argparse

import pytest

from clipsearch.gateway.settings import GatewaySettings
from clipsearch.serving.config import OperationsSettings, add_flag, port_number


def _parse(argv, monkeypatch, **env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    parser = argparse.ArgumentParser()
    GatewaySettings.add_arguments(parser)
    return GatewaySettings.from_args(parser.parse_args(argv))


def test_flags_default_from_environment_and_flags_win(monkeypatch) -> None:
    settings = _parse([], monkeypatch, CLIPSEARCH_GATEWAY_PORT="6000", CLIPSEARCH_GATEWAY_NO_REFLECTION="yes")
    assert settings.port == 6000 and settings.reflection is False
    assert _parse(["--port", "7000"], monkeypatch).port == 7000


def test_bad_environment_values_name_the_flag(monkeypatch, capsys) -> None:
    with pytest.raises(SystemExit):
        _parse([], monkeypatch, CLIPSEARCH_GATEWAY_PORT="seventy")
    assert "--port" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parse([], monkeypatch, CLIPSEARCH_GATEWAY_INSECURE="maybe")
    assert "CLIPSEARCH_GATEWAY_INSECURE" in capsys.readouterr().err


def test_port_range_and_tls_pairing(monkeypatch, tmp_path) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        port_number("70000")
    with pytest.raises(SystemExit, match="go together"):
        OperationsSettings(tls_cert="c.pem").validate()
    with pytest.raises(SystemExit, match="no such file"):
        OperationsSettings(token_file=str(tmp_path / "missing")).validate()


def test_switch_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("X_VERBOSE", "0")
    parser = argparse.ArgumentParser()
    add_flag(parser, "X", "--verbose", action="store_true")
    assert parser.parse_args([]).verbose is False
    assert parser.parse_args(["--verbose"]).verbose is True
