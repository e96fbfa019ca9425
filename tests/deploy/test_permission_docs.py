"""The Graph permission set is written once (core.permissions.REQUIRED_GRAPH_PERMISSIONS) and the
documents show exactly it: the README's and docs/deploy.md's tables (between
``<!-- permissions:begin -->`` markers) list the same permissions in the same order, with the same
reasons, and no document recommends the permissions the app no longer uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.permissions import REQUIRED_GRAPH_PERMISSIONS


def _table(path: Path) -> list[tuple[str, str]]:
    text = path.read_text(encoding="utf-8")
    block = re.search(r"<!-- permissions:begin -->\n(.*?)<!-- permissions:end -->", text, re.S)
    assert block, f"{path.name} has no permissions table between markers"
    rows = [line for line in block.group(1).splitlines() if line.startswith("| `")]
    return [tuple(cell.strip().strip("`") for cell in row.strip("|").split("|", 1)) for row in rows]  # type: ignore[misc]


@pytest.mark.parametrize("document", ["README.md", "docs/deploy.md"])
def test_permission_tables_are_the_required_set(repo_root: Path, document: str):
    assert _table(repo_root / document) == list(REQUIRED_GRAPH_PERMISSIONS.items())


@pytest.mark.parametrize("document", ["README.md", "docs/deploy.md", "infra/scripts/grant_graph_permissions.py"])
def test_no_document_still_recommends_owned_by(repo_root: Path, document: str):
    text = (repo_root / document).read_text(encoding="utf-8")
    for line in text.splitlines():
        if "Application.ReadWrite.OwnedBy" in line or "--fallback" in line:
            # only in explanations of why not / how to upgrade, never as a grant
            assert not line.startswith("| `Application.ReadWrite.OwnedBy`"), line
            assert "run the script again with `--fallback`" not in line, line
