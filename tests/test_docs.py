"""The generated references match the code, and the docs stay inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

from bedrock_cp.auth import AuthConfig
from bedrock_cp.cli.reference import cli_reference, configuration_reference, field_comments
from bedrock_cp.coordinator.config import PARAMETERS, ClusterConfig
from bedrock_cp.node.config import NodeConfig, Timers

ROOT = Path(__file__).resolve().parent.parent


def test_the_references_are_what_make_docs_writes() -> None:
    for name, text in (
        ("configuration.md", configuration_reference()),
        ("cli.md", cli_reference()),
    ):
        assert (ROOT / "docs" / name).read_text() == text, f"docs/{name} is stale: run `make docs`"


def test_every_parameter_and_node_key_is_explained() -> None:
    assert set(ClusterConfig.__struct_fields__) == PARAMETERS, "every field can be changed"
    for cls in (NodeConfig, Timers, AuthConfig, ClusterConfig):
        comments = field_comments(cls)
        missing = [f for f in cls.__struct_fields__ if not comments.get(f)]
        assert not missing, f"{cls.__name__} fields without a #: comment: {missing}"


def test_docs_link_only_inside_the_repository() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        assert "../shared" not in text and "DESIGN.md" not in text, page
        for target in re.findall(r"\]\(([^)#]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_code_cites_nothing_outside_the_repository() -> None:
    sources = [
        p
        for folder in ("bedrock_cp", "native", "tests", "benches")
        for p in (ROOT / folder).rglob("*")
        if p.suffix in (".py", ".pyx", ".pxd", ".pyi", ".rs", ".md", ".toml")
        and "target" not in p.parts
    ]
    this = Path(__file__).resolve()
    offenders = [
        str(p.relative_to(ROOT))
        for p in sources
        if p.resolve() != this and re.search(r"DESIGN|\.\./shared", p.read_text(errors="replace"))
    ]
    assert not offenders, f"cite docs/ instead: {offenders}"
