"""The code blocks of the documentation site (docs/*.md), read as the site renders them.

A fenced block whose language is a program's (``sh``, ``python``, ``js``) is an example
and runs in CI (tests/docs/test_examples.py), unless an HTML comment on the line before
it says ``<!-- not an example: why -->``. ``<!-- example: fails with CODE -->`` says the
example shows an error: it must exit non-zero and print that error code. A ``text``
block right after an example is its exact output. Other languages (``json``, ``ini``,
``text``) are outputs and configuration; a block without a language is refused, so a
writer always says which it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
RUNNABLE = {"sh": "shell", "bash": "shell", "python": "python", "js": "node"}
NOT_EXAMPLES = frozenset({"text", "json", "ini", "toml", "yaml"})

FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[^`]*)$")
NOT_AN_EXAMPLE = re.compile(r"^<!-- not an example: (?P<why>.+\S) -->$")
FAILS_WITH = re.compile(r"^<!-- example: fails with (?P<code>[a-z_]+) -->$")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    language: str
    code: str
    # The comment on the line before the fence, if any.
    note: str | None

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


@dataclass(frozen=True)
class Example:
    block: Block
    runner: str
    fails_with: str | None
    output: str | None

    @property
    def id(self) -> str:
        return f"{self.block.page}:{self.block.line}"


def blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    found: list[Block] = []
    start: int | None = None
    language = ""
    for number, line in enumerate(lines, start=1):
        fence = FENCE.match(line)
        if fence is None:
            continue
        if start is None:
            start, language = number, fence["info"].strip()
            continue
        if fence["info"].strip():
            continue  # a fence that opens inside a block: part of its text
        indent = len(fence["indent"])
        code = "\n".join(text[indent:] for text in lines[start : number - 1]) + "\n"
        before = lines[start - 2].strip() if start >= 2 else ""
        note = before if before.startswith("<!--") else None
        found.append(Block(page.name, start, language, code, note))
        start = None
    if start is not None:
        raise ValueError(f"docs/{page.name}:{start}: a code block is never closed")
    return found


def site_blocks() -> list[Block]:
    return [block for page in sorted(DOCS.glob("*.md")) for block in blocks(page)]


def examples() -> list[Example]:
    """Every block that runs, with its expected output (the ``text`` block after it)."""
    found: list[Example] = []
    for page in sorted(DOCS.glob("*.md")):
        lines = page.read_text().splitlines()
        page_blocks = blocks(page)
        for index, block in enumerate(page_blocks):
            if block.language not in RUNNABLE:
                continue
            if block.note is not None and NOT_AN_EXAMPLE.match(block.note):
                continue
            failing = FAILS_WITH.match(block.note) if block.note else None
            output = None
            if index + 1 < len(page_blocks):
                after = page_blocks[index + 1]
                end = block.line + block.code.count("\n") + 1
                between = lines[end : after.line - 1]
                if after.language == "text" and not any(text.strip() for text in between):
                    output = after.code
            found.append(
                Example(
                    block,
                    RUNNABLE[block.language],
                    failing["code"] if failing else None,
                    output,
                )
            )
    return found
