"""What the package imports, it declares (#14): every third-party module imported anywhere in bot/ or actions/
(lazy imports inside functions included: they run too) comes from a distribution listed in
``[project.dependencies]`` of pyproject.toml, not only in the ``[dev]`` extra and not merely because Rasa
happens to pull it in today.

Import names are mapped to distributions with ``importlib.metadata``: ``packages_distributions()`` reads
``top_level.txt``, which wheels built by poetry, hatch or flit (Rasa's, for one) do not have; on Python 3.10
those are found from the distribution's file list instead, as Python 3.11's ``packages_distributions()`` does.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import inspect
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "actions")
OWN = {"bot", "actions"}


def _normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them (``PyJWT`` = ``pyjwt``, ``slack_sdk`` = ``slack-sdk``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


# name, [extras], version specifier; no markers in ours. (Not packaging.requirements: the pyparsing it uses
# warns on import with the pyparsing installed here.)
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?\s*([^;]*?)\s*$")


@dataclass(frozen=True)
class Requirement:
    name: str
    extras: frozenset[str]
    specifier: SpecifierSet

    @classmethod
    def parse(cls, line: str) -> Requirement:
        match = _REQUIREMENT.match(line)
        assert match, f"cannot read the requirement {line!r}"
        name, extras, specifier = match.groups()
        specifier = specifier.strip().removeprefix("(").removesuffix(")")  # "spacy (>=3.1,<3.5)", older style
        return cls(
            name,
            frozenset(e.strip() for e in (extras or "").split(",") if e.strip()),
            SpecifierSet(specifier),
        )

    def __str__(self) -> str:
        extras = f"[{','.join(sorted(self.extras))}]" if self.extras else ""
        return f"{self.name}{extras}{self.specifier}"


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def runtime_requirements() -> list[Requirement]:
    return [Requirement.parse(line) for line in _project()["dependencies"]]


def dev_requirements() -> list[Requirement]:
    return [Requirement.parse(line) for line in _project()["optional-dependencies"]["dev"]]


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module name -> the files importing it, for every non-stdlib, non-project import."""
    found: dict[str, set[str]] = defaultdict(set)
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in OWN and top != "__future__":
                        found[top].add(str(path.relative_to(ROOT)))
    return dict(found)


def _inferred_top_level(dist: metadata.Distribution) -> set[str]:
    """Importable top-level names from a distribution's installed files (for wheels without top_level.txt)."""
    names = set()
    for file in dist.files or []:
        parts = PurePosixPath(str(file)).parts
        if not parts or parts[0] == ".." or parts[0].endswith((".dist-info", ".egg-info", ".data")):
            continue
        name = parts[0] if len(parts) > 1 else inspect.getmodulename(parts[0])
        if name and name.isidentifier():
            names.add(name)
    return names


def module_distributions() -> dict[str, set[str]]:
    """Top-level module name -> the (normalised) names of the installed distributions providing it."""
    provided: dict[str, set[str]] = defaultdict(set)
    for module, dists in metadata.packages_distributions().items():
        provided[module].update(_normalise(d) for d in dists)
    for dist in metadata.distributions():
        if not (dist.read_text("top_level.txt") or "").strip():
            for module in _inferred_top_level(dist):
                provided[module].add(_normalise(dist.metadata["Name"]))
    return dict(provided)


def test_the_import_scan_sees_the_known_imports():
    imports = third_party_imports()
    # Top of module, inside a function, and "from x.y import z" forms are all seen.
    assert {"rasa", "sanic", "slack_sdk", "jwt", "sqlalchemy", "yaml", "rasa_sdk"} <= set(imports)
    assert "bot/channels/teams.py" in imports["jwt"]
    assert not {"os", "json", "typing", "bot", "actions", "__future__"} & set(imports)


def test_import_names_map_to_distributions_even_without_top_level_txt():
    provided = module_distributions()
    assert "pyjwt" in provided["jwt"] and "pyyaml" in provided["yaml"]
    assert "rasa" in provided["rasa"] and "rasa-sdk" in provided["rasa_sdk"]  # poetry-built: no top_level.txt


def test_every_third_party_import_is_a_runtime_dependency():
    declared = {_normalise(r.name) for r in runtime_requirements()}
    provided = module_distributions()
    problems = []
    for module, files in sorted(third_party_imports().items()):
        dists = provided.get(module)
        if not dists:
            problems.append(f"{module} (imported by {', '.join(sorted(files))}) is not installed")
        elif not dists & declared:
            problems.append(
                f"{module} (imported by {', '.join(sorted(files))}) comes from {' or '.join(sorted(dists))}, "
                "which is not in [project.dependencies]"
            )
    assert not problems, "\n".join(problems)


def test_dev_holds_only_what_the_tests_need():
    runtime = {_normalise(r.name) for r in runtime_requirements()}
    both = sorted(_normalise(r.name) for r in dev_requirements() if _normalise(r.name) in runtime)
    assert not both, f"declared as runtime dependencies already, so not in [dev]: {both}"


@pytest.mark.parametrize("requirement", runtime_requirements(), ids=str)
def test_the_installed_version_is_in_each_declared_range(requirement):
    try:
        installed = metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{requirement.name} is declared but not installed")
    assert requirement.specifier.contains(Version(installed), prereleases=True), (
        f"{requirement.name} {installed} is installed, outside {requirement}"
    )
    for extra in sorted(requirement.extras):
        only_for_extra = re.compile(rf"""extra\s*==\s*["']{re.escape(extra)}["']""")
        needed = [
            Requirement.parse(line.split(";")[0])
            for line in metadata.requires(requirement.name) or []
            if only_for_extra.search(line)
        ]
        assert needed, f"{requirement.name} has no extra {extra!r}"
        for dependency in needed:
            metadata.version(dependency.name)  # raises if what the extra brings is not installed
