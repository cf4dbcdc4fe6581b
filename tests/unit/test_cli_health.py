from clipsearch.cli import main


def test_health_checks_every_named_service(capsys) -> None:
    assert main(["health", "--gateway", "127.0.0.1:1", "--index", "127.0.0.1:2", "--timeout", "0.5"]) == 1
    out = capsys.readouterr().out
    assert "gateway 127.0.0.1:1: UNREACHABLE" in out and "index 127.0.0.1:2: UNREACHABLE" in out


def test_health_needs_a_target(capsys) -> None:
    assert main(["health"]) == 2
    assert "--gateway" in capsys.readouterr().err
