from floodwatch.cli.reference import render
from floodwatch.settings import PROJECT_ROOT


def test_cli_reference_matches_the_real_help():
    page = (PROJECT_ROOT / "docs" / "cli-reference.md").read_text()
    assert page == render(), (
        "docs/cli-reference.md is out of date: python -m floodwatch.cli.reference > docs/cli-reference.md")
