"""The Python code blocks of README.md and docs/*.md, for tests/test_docs.py (compile or run
each) and tests/integration/test_user_project.py (write the README's example project)."""

from __future__ import annotations

import dataclasses
import pathlib
import re

from markdown_it import MarkdownIt

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A block whose first line is `# dags/my_dag.py` is a file of the README's example project.
PROJECT_FILE = re.compile(r"\A# ((?:dags|tests)/[\w/]+\.py)\n")
# ```python test="compile"```: a fragment (names defined elsewhere, or real Truto data needed).
COMPILE_ONLY = 'test="compile"'


@dataclasses.dataclass(frozen=True)
class Block:
    doc: pathlib.Path
    line: int
    source: str
    info: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def project_file(self) -> str | None:
        match = PROJECT_FILE.match(self.source)
        return match.group(1) if match else None

    @property
    def runs(self) -> bool:
        return COMPILE_ONLY not in self.info and self.project_file is None


def python_blocks(docs: list[pathlib.Path] = DOCS) -> list[Block]:
    blocks = []
    for doc in docs:
        for tok in MarkdownIt().parse(doc.read_text()):
            words = tuple(tok.info.split())
            if tok.type != "fence" or words[:1] not in (("python",), ("py",)):
                continue
            assert tok.map is not None
            blocks.append(Block(doc, tok.map[0] + 1, tok.content, words[1:]))
    return blocks
