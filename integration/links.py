#!/usr/bin/env python3
"""Checks that every link between the docs pages resolves: the file, and the heading an anchor
names.

The pages are README.md and every `*.md` under docs/. A link is `[text](target)` or a reference
definition `[label]: target`, outside fenced blocks and inline code. A target with a scheme
(`https:`, `mailto:`) is left alone; any other is a path relative to the page (or `#anchor` on
the page itself) that must exist inside the repository. An anchor into a Markdown page must be
the slug of one of its headings, made the way GitHub makes them (lower case, punctuation but `-`
and `_` dropped, spaces to `-`, `-1`, `-2` … for repeats), or an `id`/`name` of an HTML tag.

    integration/links.py [PAGE]...      # default: README.md and docs/**/*.md

Python standard library only. Exit 0 when every link resolves, 1 otherwise, each broken link
named with its page and line.
"""

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Pages that are linked before they are written: while one does not exist, a link to it is
# reported and not failed; once it exists, its links and anchors are checked like any other.
PENDING: set[str] = set()

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HTML_ID = re.compile(r"<[a-zA-Z][^>]*\s(?:id|name)=\"([^\"]+)\"")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose(text):
    """(line number, line) of every line outside fenced blocks."""
    fenced = None
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m:
            if fenced is None:
                fenced = m.group(1)
            elif m.group(1) == fenced:
                fenced = None
            continue
        if fenced is None:
            yield n, line


def slug(heading):
    """GitHub's anchor for a heading's text."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text)  # HTML tags
    text = re.sub(r"(\*+|(?<!\w)_+|_+(?!\w))", "", text)  # emphasis markers, not snake_case
    return "".join(c for c in text.lower() if c.isalnum() or c in "-_ ").replace(" ", "-")


def anchors(text):
    """Every anchor a page defines."""
    found, seen = set(), {}
    for _, line in prose(text):
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(HTML_ID.findall(line))
    return found


def links(text):
    """(line number, target) of every link of a page."""
    for n, line in prose(text):
        ref = REFERENCE.match(line)
        if ref:
            yield n, ref.group(1)
            continue
        bare = CODE_SPAN.sub("", line)
        for m in INLINE.finditer(bare):
            yield n, m.group(1)


def check(page, cache):
    """Problems and notes of one page (a path inside the repository)."""
    problems, notes = [], []
    text = page.read_text()
    name = page.relative_to(REPO)
    for n, target in links(text):
        if SCHEME.match(target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        where = f"{name}:{n}: `{target}`"
        try:
            rel = dest.relative_to(REPO).as_posix()
        except ValueError:
            problems.append(f"{where} points outside the repository")
            continue
        if not dest.exists():
            if rel in PENDING:
                notes.append(f"{where}: {rel} is not written yet")
            else:
                problems.append(f"{where}: no file {rel}")
            continue
        if anchor and dest.suffix == ".md":
            if dest not in cache:
                cache[dest] = anchors(dest.read_text())
            if anchor not in cache[dest]:
                problems.append(f"{where}: {rel} has no heading with the anchor #{anchor}")
    return problems, notes


def main(argv):
    pages = [Path(a).resolve() for a in argv] or [
        REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))
    ]
    cache, problems, notes, count = {}, [], [], 0
    for page in pages:
        p, n = check(page, cache)
        problems += p
        notes += n
        count += sum(1 for _ in links(page.read_text()))
    for note in notes:
        print(f"NOTE  {note}")
    for problem in problems:
        print(f"FAIL  {problem}")
    if problems:
        return 1
    print(f"PASS  links: {count} links in {len(pages)} pages resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
