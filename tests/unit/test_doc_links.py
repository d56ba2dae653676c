"""Every relative link of the repository's Markdown files points to a file or
directory inside the repository."""

from __future__ import annotations

import re
import subprocess

from conftest import ROOT

LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_relative_links_of_markdown_files_resolve_inside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    broken = []
    for name in tracked:
        path = ROOT / name
        if not path.is_file():
            continue
        for target in LINK.findall(path.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor of the same file
            resolved = (path.parent / target.split("#")[0]).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                broken.append(f"{name}: {target}")
    assert broken == []
