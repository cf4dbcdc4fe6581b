import pytest

from clipsearch.apps.cli import main

pytestmark = pytest.mark.unit


def test_health_checks_every_named_service(capsys) -> None:
    assert main(["health", "--gateway", "127.0.0.1:1", "--index", "127.0.0.1:2", "--timeout", "0.5"]) == 1
    out = capsys.readouterr().out
    assert "gateway 127.0.0.1:1: UNREACHABLE" in out and "index 127.0.0.1:2: UNREACHABLE" in out


def test_health_needs_a_target(capsys) -> None:
    assert main(["health"]) == 2
    assert "--gateway" in capsys.readouterr().err


def test_the_page_refuses_a_public_bind_without_insecure(capsys) -> None:
    import pytest

    from clipsearch._options import OptionError
    from clipsearch.apps.ui.settings import UISettings

    with pytest.raises(OptionError, match="--insecure"):
        UISettings(host="0.0.0.0", port=0)
    assert UISettings(host="0.0.0.0", port=0, insecure=True).insecure
    with pytest.raises(SystemExit, match="no TLS or login"):
        main(["ui", "--host", "0.0.0.0"])


def test_an_explanation_reads_as_one_line() -> None:
    from clipsearch.apps.output import describe, format_hits
    from clipsearch.types import Explanation, Hit

    keyword_only = Explanation(None, 7.304, None, 1, 0.9, ("red", "dres→dress"), ("sku",), True)
    assert (
        describe(keyword_only) == "vector - | keyword 7.30 #1 | matched red, dres→dress | exact sku | boosted"
    )
    both = Explanation(0.61234, 2.0, 3, 2, 1.5)
    assert describe(both) == "vector 0.612 #3 | keyword 2.00 #2"
    table = format_hits([Hit("p1", 1.5, {"title": "Red dress"}, explanation=both)], explain=True)
    assert table.splitlines()[2].strip() == "vector 0.612 #3 | keyword 2.00 #2"
