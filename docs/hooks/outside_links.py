"""mkdocs hook: a guide's relative link to a file of the repository outside ``docs/`` (``../README.md``,
``../benchmarks/README.md``, ``../hf_genrec/recipes/hybrid.yaml``) becomes a link to that file on the repository's
site (``repo_url``), and only when the file exists: a link to a missing file is left as it is, so ``mkdocs build
--strict`` reports it like any other broken link. Links between guides are not touched and stay checked by mkdocs."""

from __future__ import annotations

import re
from pathlib import Path

LINK = re.compile(r"\]\((?P<target>\.\./[^)#\s]+)(?P<anchor>#[^)\s]*)?\)")


def on_page_markdown(markdown, page, config, files):
    docs_dir = Path(config["docs_dir"]).resolve()
    repo_root = Path(config["config_file_path"]).resolve().parent
    repo_url = (config.get("repo_url") or "").rstrip("/")
    page_dir = (docs_dir / page.file.src_path).parent

    def rewrite(match: re.Match) -> str:
        target = (page_dir / match["target"]).resolve()
        if docs_dir in target.parents or not target.is_relative_to(repo_root) or not target.exists():
            return match.group(0)  # a guide, or a missing file: mkdocs checks it
        kind = "tree" if target.is_dir() else "blob"
        path = target.relative_to(repo_root).as_posix()
        return f"]({repo_url}/{kind}/main/{path}{match['anchor'] or ''})"

    return LINK.sub(rewrite, markdown)
