"""``hf-genrec demo``: a page where a person tries a saved recommender (`hf_genrec.serving.demo`), or, with
``--space-dir``, the files of a Hugging Face Space that shows the same page for a bundle on the Hub."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from ..version import __version__

APP = '''"""The demo page of the hf_genrec recommender {repo_id} (written by `hf-genrec demo --space-dir`)."""

from hf_genrec.serving.demo import build_demo, launch_demo

demo = build_demo({repo_literal})

if __name__ == "__main__":
    launch_demo(demo)
'''

#: hf_genrec is not on PyPI yet: the Space installs it from its repository (pin a tag or commit to freeze it)
SPACE_REQUIREMENTS = """# hf_genrec {version} or later, from its repository: add @<tag or commit> to the URL to pin it
hf_genrec[demo] @ git+https://github.com/hf-genrec/hf_genrec
"""

SPACE_README = """---
title: {title}
emoji: 🧭
colorFrom: indigo
colorTo: blue
sdk: gradio
app_file: app.py
pinned: false
models:
- {repo_id}
short_description: Pick a history, get the top K and the why of each
---

# {title}

Pick a history of items and get the top K of the generative recommender
[{repo_id}](https://huggingface.co/{repo_id}) (hf_genrec: semantic IDs, a sequence-to-sequence model and a
trie-constrained beam search), each with its semantic ID and the longest prefix of it that it shares with an item of
the history.
"""


def _is_repo_id(bundle: str) -> bool:
    parts = bundle.split("/")
    return not Path(bundle).exists() and len(parts) == 2 and all(parts)


def write_space(space_dir: str | Path, repo_id: str) -> list[Path]:
    """Write a Hugging Face Space that shows the demo page of the Hub bundle ``repo_id``: ``app.py``,
    ``requirements.txt`` and ``README.md`` (the Space's settings). Returns the files written."""
    if not _is_repo_id(repo_id):
        raise ValueError(
            f"--space-dir needs the bundle's Hub repo id (`user/name`), got {repo_id!r}: a Space downloads the "
            "bundle from the Hub. Push the folder first (`hf-genrec push FOLDER user/name`) and pass that repo id."
        )
    folder = Path(space_dir)
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "app.py": APP.format(repo_id=repo_id, repo_literal=json.dumps(repo_id)),
        "requirements.txt": SPACE_REQUIREMENTS.format(version=__version__),
        # the Hub refuses a Space title over 30 characters (and a short_description over 60)
        "README.md": SPACE_README.format(repo_id=repo_id, title=repo_id.split("/")[1][:30]),
    }
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return [folder / name for name in files]


def run(argv: Sequence[str]) -> int:
    """Run ``hf-genrec demo`` on ``argv``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="hf-genrec demo",
        description="Start a page where a person picks a history and sees the top K with the why of each, or write "
        "a Hugging Face Space that shows it (--space-dir).",
    )
    parser.add_argument("bundle", help="A folder written by `hf-genrec train` or `save_pretrained`, or a Hub repo id.")
    parser.add_argument("--host", default="127.0.0.1", help="Address to serve on (0.0.0.0: every interface).")
    parser.add_argument("--port", type=int, default=7860, help="Port to serve on (default: 7860).")
    parser.add_argument("--share", action="store_true", help="Also open a temporary public gradio.live link.")
    parser.add_argument("--device", default=None, help="Where to run the model (default: the CPU).")
    parser.add_argument(
        "--space-dir",
        default=None,
        help="Write a Hugging Face Space (app.py, requirements.txt, README.md) for the Hub repo BUNDLE into this "
        "folder instead of serving; upload it with `hf upload user/space-name DIR . --repo-type space`.",
    )
    args = parser.parse_args(argv)

    if args.space_dir is not None:
        for path in write_space(args.space_dir, args.bundle):
            print(f"Wrote {path}")
        return 0
    from ..serving.demo import build_demo, launch_demo

    demo = build_demo(args.bundle, device=args.device)
    launch_demo(demo, server_name=args.host, server_port=args.port, share=args.share)
    return 0
