"""EncoderSettings: flags, environment defaults, validation naming the flag."""

from __future__ import annotations

import argparse

import pytest

from clipsearch._options import OptionError as SettingsError
from encoder_service.settings import EncoderSettings
from encoder_service.weights import DEMO_CHECKPOINT

pytestmark = pytest.mark.unit


def parse(*argv: str) -> EncoderSettings:
    parser = argparse.ArgumentParser()
    EncoderSettings.add_arguments(parser)
    return EncoderSettings.from_args(parser.parse_args(list(argv)))


def test_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CLIPSEARCH_ENCODER_PORT", "CLIPSEARCH_ENCODER_MODEL", "CLIPSEARCH_ENCODER_PRETRAINED"):
        monkeypatch.delenv(name, raising=False)
    settings = parse()
    assert (settings.host, settings.port, settings.model) == ("127.0.0.1", 50051, "clipsearch-demo")
    assert settings.pretrained is None
    assert settings.pretrained_source == str(DEMO_CHECKPOINT)
    assert (settings.device, settings.precision, settings.metrics_port) == ("auto", "fp32", 0)


def test_every_flag_defaults_from_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPSEARCH_ENCODER_PORT", "6000")
    monkeypatch.setenv("CLIPSEARCH_ENCODER_MODEL", "ViT-B-32")
    monkeypatch.setenv("CLIPSEARCH_ENCODER_PRETRAINED", "random")
    monkeypatch.setenv("CLIPSEARCH_ENCODER_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("CLIPSEARCH_ENCODER_MAX_WAIT_MS", "2.5")
    monkeypatch.setenv("CLIPSEARCH_ENCODER_NO_REFLECTION", "true")
    monkeypatch.setenv("CLIPSEARCH_ENCODER_DEVICE", "cuda:1")
    settings = parse()
    assert (settings.port, settings.model, settings.pretrained) == (6000, "ViT-B-32", "random")
    assert (settings.max_batch_size, settings.max_wait_ms) == (8, 2.5)
    assert settings.no_reflection is True
    assert settings.device == "cuda:1"
    # The command line still wins over the environment.
    assert parse("--port", "7000").port == 7000


def test_every_field_has_a_flag_and_an_environment_variable() -> None:
    parser = argparse.ArgumentParser()
    EncoderSettings.add_arguments(parser)
    help_text = parser.format_help()
    for field in EncoderSettings.__dataclass_fields__:
        flag = "--" + field.replace("_", "-")
        assert flag in help_text
        assert "CLIPSEARCH_ENCODER_" + field.upper() in help_text.replace("\n", "").replace(" ", "")


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--max-batch-size", "-1"], "--max-batch-size"),
        (["--device", "tpu"], "--device"),
        (["--precision", "int8"], "--precision"),
        (["--port", "70000"], "--port"),
        (["--max-wait-ms", "soon"], "--max-wait-ms"),
    ],
)
def test_a_bad_flag_fails_naming_it(argv: list[str], flag: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)
    assert flag in capsys.readouterr().err


def test_a_bad_environment_value_fails_naming_the_flag_and_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("CLIPSEARCH_ENCODER_MAX_QUEUE", "-3")
    with pytest.raises(SystemExit):
        parse()
    err = capsys.readouterr().err
    assert "--max-queue" in err and "CLIPSEARCH_ENCODER_MAX_QUEUE" in err


def test_other_models_need_an_explicit_pretrained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLIPSEARCH_ENCODER_PRETRAINED", raising=False)
    with pytest.raises(SystemExit, match="--pretrained"):
        parse("--model", "ViT-B-32")
    with pytest.raises(SettingsError, match="--pretrained: required for --model ViT-B-32"):
        EncoderSettings(model="ViT-B-32")
    assert EncoderSettings(model="ViT-B-32", pretrained="random").pretrained_source == "random"


def test_constructing_in_code_validates_too() -> None:
    with pytest.raises(SettingsError, match=r"^--max-queue"):
        EncoderSettings(max_queue=0)
    with pytest.raises(SettingsError, match=r"^--device"):
        EncoderSettings(device="gpu")
