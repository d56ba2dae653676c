"""The Node and Go snippets of docs/workflows.md's "Rate limits and
concurrency keys" are code that runs: every line of each is a line of the
client program that tests/conformance/test_rate_limits.py runs against a
real server, in the same order (the programs check errors between them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import ROOT

PROGRAMS = {
    "ts": ROOT / "workers" / "node" / "examples" / "limits-client.ts",
    "go": ROOT / "workers" / "go" / "cmd" / "limits-client" / "main.go",
}


def section_blocks(title: str) -> dict[str, list[str]]:
    """The fenced code blocks of one `## ` section of docs/workflows.md, by language."""
    text = (ROOT / "docs" / "workflows.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    blocks: dict[str, list[str]] = {}
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```$", text[start:end], re.S | re.M):
        assert lang not in blocks, f"two {lang} blocks in {title!r}"
        blocks[lang] = body.splitlines()
    return blocks


def missing_lines(snippet: list[str], program: Path) -> list[str]:
    """The snippet's lines not found, in order, among the program's lines
    (both compared without their indentation)."""
    lines = iter(line.strip() for line in program.read_text().splitlines())
    return [want for want in (s.strip() for s in snippet if s.strip()) if want not in lines]


@pytest.mark.parametrize("lang", sorted(PROGRAMS))
def test_the_rate_limit_snippet_is_the_code_of_the_limits_client(lang: str) -> None:
    snippet = section_blocks("Rate limits and concurrency keys")[lang]
    assert len(snippet) >= 5
    assert missing_lines(snippet, PROGRAMS[lang]) == []


def test_a_snippet_line_out_of_order_or_changed_is_missing(tmp_path: Path) -> None:
    program = tmp_path / "p.ts"
    program.write_text("  a();\nif (err) return;\n  b();\n")
    assert missing_lines(["a();", "", "b();"], program) == []
    assert missing_lines(["b();", "a();"], program) == ["a();"]
    assert missing_lines(["a();", "c();"], program) == ["c();"]
