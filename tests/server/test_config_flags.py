import argparse
from dataclasses import dataclass

import pytest

from clipsearch._options import OptionError, Options, int_in, option
from clipsearch.apps.gateway.settings import GatewaySettings
from clipsearch.server.settings import GrpcServerSettings

pytestmark = pytest.mark.unit


def _parse(argv, monkeypatch, **env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    parser = argparse.ArgumentParser()
    GatewaySettings.add_arguments(parser)
    return GatewaySettings.from_args(parser.parse_args(argv))


def test_flags_default_from_environment_and_flags_win(monkeypatch) -> None:
    settings = _parse([], monkeypatch, CLIPSEARCH_GATEWAY_PORT="6000", CLIPSEARCH_GATEWAY_NO_REFLECTION="yes")
    assert settings.port == 6000 and settings.no_reflection is True
    assert _parse(["--port", "7000"], monkeypatch).port == 7000


def test_bad_environment_values_name_the_flag_and_variable(monkeypatch, capsys) -> None:
    with pytest.raises(SystemExit):
        _parse([], monkeypatch, CLIPSEARCH_GATEWAY_PORT="seventy")
    err = capsys.readouterr().err
    assert "--port" in err and "CLIPSEARCH_GATEWAY_PORT" in err
    with pytest.raises(SystemExit):
        _parse([], monkeypatch, CLIPSEARCH_GATEWAY_PORT="7000", CLIPSEARCH_GATEWAY_INSECURE="maybe")
    assert "CLIPSEARCH_GATEWAY_INSECURE" in capsys.readouterr().err


def test_a_bad_variable_only_matters_to_the_command_that_reads_it(monkeypatch, capsys) -> None:
    """Kubernetes service links put CLIPSEARCH_ENCODER_PORT=tcp://... in every pod."""
    from clipsearch.apps.cli import build_parser

    monkeypatch.setenv("CLIPSEARCH_ENCODER_PORT", "tcp://10.0.0.5:50051")
    parser = build_parser()  # every command's flags: no error here
    assert parser.parse_args(["health", "--encoder", "127.0.0.1:1"]).command == "health"
    assert parser.parse_args(["serve", "encoder", "--port", "50051"]).port == 50051
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "encoder"])
    assert "CLIPSEARCH_ENCODER_PORT" in capsys.readouterr().err


def test_operations_settings_are_validated(tmp_path) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        int_in(0, 65535)("70000")
    with pytest.raises(OptionError, match="go together"):
        GrpcServerSettings(tls_cert=str(tmp_path))
    with pytest.raises(OptionError, match=r"--token-file.*no such file"):
        GrpcServerSettings(token_file=str(tmp_path / "missing"))
    with pytest.raises(OptionError, match="--log-format"):
        GrpcServerSettings(log_format="xml")


def test_bad_settings_exit_with_the_flag(monkeypatch, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit, match="--token-file"):
        _parse(["--token-file", str(tmp_path / "nope")], monkeypatch)


@dataclass(frozen=True)
class _Talk(Options):
    ENV_PREFIX = "X_"
    verbose: bool = option(False, "talk more", switch=True)
    level: int = option(1, "how much", parse=int_in(0, 3))


def test_switch_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("X_VERBOSE", "0")
    parser = argparse.ArgumentParser()
    _Talk.add_arguments(parser)
    assert parser.parse_args([]).verbose is False
    assert parser.parse_args(["--verbose"]).verbose is True
    monkeypatch.setenv("X_VERBOSE", "yes")
    parser = argparse.ArgumentParser()
    _Talk.add_arguments(parser)
    assert parser.parse_args([]).verbose is True


def test_a_bad_switch_variable_fails_only_the_command_that_reads_it(monkeypatch, capsys) -> None:
    monkeypatch.setenv("X_VERBOSE", "maybe")
    parser = argparse.ArgumentParser()
    _Talk.add_arguments(parser)  # building the parser is fine
    with pytest.raises(SystemExit):
        parser.parse_args([])
    assert "X_VERBOSE" in capsys.readouterr().err


def test_one_declaration_gives_flag_variable_and_check() -> None:
    assert _Talk.flag_of("level") == "--level" and _Talk.env_var("--level") == "X_LEVEL"
    with pytest.raises(OptionError, match=r"^--level: must be in \[0, 3\], got 5"):
        _Talk(level=5)
    parser = argparse.ArgumentParser()
    _Talk.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--level", "5"])
