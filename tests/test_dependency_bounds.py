"""pyproject.toml allows exactly the uvicorn and sse-starlette versions the fast path was tested on.

``gateway._fastpath`` turns itself off outside ``TESTED_VERSIONS``; pyproject.toml bounds
what can be installed. Apart, they fail quietly: a version pyproject.toml allows runs the
stock path without anyone deciding so, or a tested range names versions nobody can install.
(``./scripts/test-lowest`` proves the lower bounds, with the fast path on, at every run.)
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from gateway._fastpath import TESTED_VERSIONS

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENT = re.compile(r"(?P<name>[A-Za-z0-9_.-]+)(\[[^\]]*\])?(?P<specifiers>.*)")

Minor = tuple[int, int]


def minor(text: str) -> Minor:
    """``"0.29"`` -> ``(0, 29)``: a bound's major and minor version."""
    major, minor_, *_ = text.split(".")
    return int(major), int(minor_)


def declared_range(package: str) -> tuple[Minor, Minor]:
    """The ``>=`` and ``<`` bounds pyproject.toml gives ``package`` among the base dependencies."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dependency in project["dependencies"]:
        match = REQUIREMENT.fullmatch(dependency.replace(" ", ""))
        assert match is not None, dependency
        if match["name"].lower() != package:
            continue
        specifiers = match["specifiers"].split(",")
        lower = [spec.removeprefix(">=") for spec in specifiers if spec.startswith(">=")]
        upper = [spec.removeprefix("<") for spec in specifiers if re.match(r"<\d", spec)]
        bounds = len(lower), len(upper)
        assert bounds == (1, 1), (
            f"pyproject.toml: {dependency!r} needs one lower (>=) and one upper (<) bound"
        )
        return minor(lower[0]), minor(upper[0])
    raise AssertionError(f"pyproject.toml does not declare {package}")


@pytest.mark.parametrize("package", sorted(TESTED_VERSIONS))
def test_pyproject_allows_exactly_the_fast_paths_tested_range(package: str) -> None:
    lowest, untested = TESTED_VERSIONS[package]
    assert declared_range(package) == (lowest, untested), (
        f"{package}: pyproject.toml and gateway/_fastpath/compat.py's TESTED_VERSIONS disagree; "
        "move both after running ./scripts/test on the new range"
    )


def test_a_bound_is_read_as_its_major_and_minor() -> None:
    assert minor("0.29") == (0, 29)
    assert minor("3.0.1") == (3, 0)
