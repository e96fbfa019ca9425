"""List what the function app deployment package would contain, as azd and Core Tools build it.

Why: the package is built from the repository root, so one missing `.funcignore` line ships the
emulator, the tests or a local secret to Azure, and nothing fails until someone looks. Two tools
read `.funcignore`, with different rules:

* **azd** (`azd deploy`, the documented path) applies real gitignore rules.
* **Core Tools** (`func azure functionapp publish`) uses its own `GitIgnoreParser`: each pattern
  becomes a regular expression matched against the *start* of the file's relative path (a prefix
  match, not anchored at the end), ``*`` never crosses ``/``, ``**`` matches anything, a leading
  ``/`` is dropped, ``[...]`` is literal, and a negated (``!``) pattern always wins whatever its
  position. Before that it skips ``.git``/``.vscode`` directories and ``.funcignore``,
  ``.gitignore``, ``local.settings.json``, ``project.lock.json`` files at any depth.

Both are implemented here so the tests (and a human: ``python infra/scripts/package_contents.py``)
can see the package either tool would build. Needs ``pathspec`` (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pathspec

# Core Tools never enumerates these, whatever .funcignore says (FileSystemHelpers.GetLocalFiles).
CORE_TOOLS_SKIPPED_DIRS = frozenset({".git", ".vscode"})
CORE_TOOLS_SKIPPED_FILES = frozenset({".funcignore", ".gitignore", "local.settings.json", "project.lock.json"})

# Characters Core Tools escapes before turning * and ** into regex (note: not "*", so globs work,
# and "[" / "]" so character classes are literal).
_ESCAPE = re.compile(r"[\-\[\]/{}()+?.\\^$|]")


def _core_tools_regex(pattern: str) -> str:
    escaped = _ESCAPE.sub(lambda m: "\\" + m.group(0), pattern)
    return escaped.replace("**", "(.+)").replace("*", r"([^/]+)")


class CoreToolsIgnore:
    """The `.funcignore` semantics of Azure Functions Core Tools' publish command."""

    def __init__(self, text: str) -> None:
        positive: list[str] = []
        negative: list[str] = []
        for raw in text.split("\n"):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            target = positive
            if line.startswith("!"):
                target, line = negative, line[1:]
            if line.startswith("/"):
                line = line[1:]
            target.append(line)
        self._positive = self._compile(sorted(positive))
        self._negative = self._compile(sorted(negative))

    @staticmethod
    def _compile(patterns: list[str]) -> re.Pattern[str] | None:
        if not patterns:
            return None
        return re.compile("^((" + ")|(".join(_core_tools_regex(p) for p in patterns) + "))")

    def accepts(self, relative_path: str) -> bool:
        """True when the file (path relative to the app root, "/"-separated) is shipped."""
        if self._negative is not None and self._negative.match(relative_path):
            return True
        return self._positive is None or not self._positive.match(relative_path)


def walk(
    root: Path,
    skip_dirs: Iterable[str] = (),
    skip_files: Iterable[str] = (),
    prune: Callable[[str], bool] = lambda _: False,
) -> Iterator[str]:
    """Every file under ``root`` as a "/"-separated relative path, sorted, minus skipped names.

    ``prune(relative_dir)`` drops a whole directory without listing it.
    """
    skip_dirs_lower = {d.lower() for d in skip_dirs}
    skip_files_lower = {f.lower() for f in skip_files}
    for current, dirs, files in os.walk(root):
        base = Path(current).relative_to(root)
        dirs[:] = sorted(
            d for d in dirs if d.lower() not in skip_dirs_lower and not prune((base / d).as_posix())
        )
        for name in sorted(files):
            if name.lower() not in skip_files_lower:
                yield (base / name).as_posix()


def core_tools_package(root: Path) -> list[str]:
    """Files `func azure functionapp publish` would zip from ``root``."""
    ignore = CoreToolsIgnore(_read_funcignore(root))
    files = walk(root, CORE_TOOLS_SKIPPED_DIRS, CORE_TOOLS_SKIPPED_FILES)
    return [path for path in files if ignore.accepts(path)]


def azd_package(root: Path) -> list[str]:
    """Files `azd deploy` would zip from ``root`` (gitignore rules from `.funcignore`)."""
    spec = pathspec.GitIgnoreSpec.from_lines(_read_funcignore(root).splitlines())
    # In gitignore, nothing inside an excluded directory can be re-included, so skipping the
    # directory is exact (and avoids listing .venv and node_modules).
    files = walk(root, prune=lambda directory: spec.match_file(directory + "/"))
    return [path for path in files if not spec.match_file(path)]


def _read_funcignore(root: Path) -> str:
    path = root / ".funcignore"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default=".", type=Path, help="app root (default: current directory)")
    parser.add_argument("--tool", choices=["azd", "core-tools"], default="azd")
    args = parser.parse_args(argv)
    files = azd_package(args.root) if args.tool == "azd" else core_tools_package(args.root)
    for path in files:
        print(path)
    print(f"{len(files)} files", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
