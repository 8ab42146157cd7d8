"""The runbook as the docs pages write it: marked code blocks, and the shape of their outputs.

A step is a fenced block right after `<!-- runbook: NAME -->`: a `console` block of `$ command`
lines, each followed by the output it printed (a trailing `\\` continues a command on the next
line). A file is a fenced block right after `<!-- runbook-file: NAME -->`: its text is written to
NAME in the runbook's working directory before any step runs.

The runbook is docs/RUNBOOK.md, then every other page (README.md, docs/*.md) that carries a
marked block, in the order of their paths; their steps run in that order, one after another in
one shell. A step or file name is used once across all pages.

The shape of an output is what must not drift between a page and a real run: the top-level
keys of a JSON document (or of each JSON line, or of each element of a JSON array), and for
text the kind of each line (a metric name, a header name, an SSE field). A line `...` on a
page stands for lines left out of a text output.
"""

import json
import re
from dataclasses import dataclass, field

STEP = re.compile(r"^<!-- runbook: ([a-z0-9-]+) -->\s*$")
FILE = re.compile(r"^<!-- runbook-file: ([A-Za-z0-9._-]+) -->\s*$")
FENCE = re.compile(r"^```([a-z]*)\s*$")


class PageError(Exception):
    """A page's runbook markup is broken; the message says where."""


@dataclass
class Command:
    text: str
    output: str


@dataclass
class Step:
    name: str
    page: str
    line: int
    commands: list = field(default_factory=list)

    def where(self):
        return f"{self.page} line {self.line}"


@dataclass
class Runbook:
    steps: list
    files: dict


RUNBOOK = "docs/RUNBOOK.md"


def has_markers(text):
    """Whether a page carries any runbook step or file."""
    return any(STEP.match(l) or FILE.match(l) for l in text.splitlines())


def discover(root):
    """The pages of the runbook under `root`, relative to it: RUNBOOK first, then every other
    page with a marked block, by path."""
    candidates = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    others = [
        str(p.relative_to(root))
        for p in candidates
        if p.is_file() and str(p.relative_to(root)) != RUNBOOK and has_markers(p.read_text())
    ]
    return [RUNBOOK, *sorted(others)]


def collect(pages):
    """The steps and files of several pages, given as (name, text), in order; a name used twice
    (on one page or across pages) is an error."""
    steps, files, where = [], {}, {}
    for page, text in pages:
        book = parse(text, page)
        for name in book.files:
            if name in where:
                raise PageError(f"{page}: the runbook file {name!r} is also written on {where[name]}")
            where[name] = page
        files.update(book.files)
        steps.extend(book.steps)
    first = {}
    for s in steps:
        if s.name in first:
            raise PageError(f"the runbook step {s.name!r} is named twice: {first[s.name]} and {s.where()}")
        first[s.name] = s.where()
    return Runbook(steps, files)


def parse(text, page):
    """Every marked step and file of a page, in order."""
    lines = text.splitlines()
    steps, files = [], {}
    for i, line in enumerate(lines):
        step, file = STEP.match(line), FILE.match(line)
        if not (step or file):
            continue
        lang, body = fenced_block(lines, i, page)
        if file:
            if file.group(1) in files:
                raise PageError(f"{page} line {i + 1}: the runbook file {file.group(1)!r} is written twice")
            files[file.group(1)] = "\n".join(body) + "\n"
        elif lang != "console":
            raise PageError(
                f"{page} line {i + 1}: the runbook step {step.group(1)!r} must be a ```console block"
            )
        else:
            steps.append(Step(step.group(1), page, i + 1, console(body, page, i + 1)))
    return Runbook(steps, files)


def fenced_block(lines, marker, page):
    """The language and lines of the fenced block following the marker on line `marker`."""
    i = marker + 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    m = FENCE.match(lines[i]) if i < len(lines) else None
    if not m:
        raise PageError(f"{page} line {marker + 1}: a runbook marker must be followed by a fenced block")
    end = i + 1
    while end < len(lines) and not lines[end].startswith("```"):
        end += 1
    if end == len(lines):
        raise PageError(f"{page} line {i + 1}: the fenced block is not closed")
    return m.group(1), lines[i + 1 : end]


def console(body, page, line):
    """`$ command` lines and their outputs."""
    commands = []
    it = iter(body)
    for text in it:
        if text.startswith("$ "):
            cmd = text[2:]
            while cmd.endswith("\\"):
                cmd = cmd + "\n" + next(it, "")
            commands.append(Command(cmd, ""))
        elif not commands:
            raise PageError(f"{page} line {line}: a runbook block must start with a `$ ` command")
        else:
            commands[-1].output += text + "\n"
    return commands


@dataclass(frozen=True)
class Shape:
    """`kind` is json, lines (JSON per line or array elements), text or empty. For json,
    `required` == `allowed`; for lines, every element has the `required` keys and no key outside
    `allowed`; for text, the page's line kinds (`required`) all occur in the real output."""

    kind: str
    required: frozenset
    allowed: frozenset

    def describe(self):
        if self.kind == "text":
            return f"text with lines {sorted(self.required)}"
        if self.kind == "lines" and self.required != self.allowed:
            optional = sorted(self.allowed - self.required)
            return f"lines with keys {sorted(self.required)} (optional {optional})"
        return f"{self.kind} with keys {sorted(self.required)}"


def keys(value):
    if isinstance(value, dict):
        return frozenset(value)
    return frozenset({type(value).__name__})


def shape(text):
    lines = [l for l in text.splitlines() if l.strip() and l.strip() != "..."]
    if not lines:
        return Shape("empty", frozenset(), frozenset())
    try:
        doc = json.loads("\n".join(lines))
    except ValueError:
        doc = None
    else:
        if not isinstance(doc, list):
            return Shape("json", keys(doc), keys(doc))
    docs = doc if isinstance(doc, list) else json_lines(lines)
    if docs is not None:
        sets = [keys(d) for d in docs] or [frozenset()]
        return Shape("lines", frozenset.intersection(*sets), frozenset.union(*sets))
    kinds = frozenset(line_kind(l) for l in lines)
    return Shape("text", kinds, kinds)


def json_lines(lines):
    try:
        return [json.loads(l) for l in lines]
    except ValueError:
        return None


def line_kind(line):
    """What a line of text is, without its values."""
    m = re.match(r"data: (\{.*\})$", line)
    if m:
        try:
            return "data: " + ",".join(sorted(json.loads(m.group(1))))
        except ValueError:
            pass
    for pattern in (
        r"(# (?:TYPE|HELP) \S+)",  # a metric family
        r"(HTTP/)\S+ \d+",  # a status line
        r"([A-Za-z][\w-]*):(?: |$)",  # a header or SSE field
        r"([A-Za-z_:][\w:]*)(?:\{| )",  # a metric sample
    ):
        m = re.match(pattern, line)
        if m:
            return m.group(1)
    try:
        return "json: " + ",".join(sorted(keys(json.loads(line))))
    except ValueError:
        return line.split()[0]


def conforms(expected, actual):
    """Whether a real output (its Shape) has the shape the page shows."""
    if expected.kind != actual.kind:
        return False
    if expected.kind == "text":
        return expected.required <= actual.required
    if expected.kind == "lines":
        # An empty array/no lines conforms: the page shows what elements look like.
        return not actual.allowed or (
            expected.required <= actual.required and actual.allowed <= expected.allowed
        )
    return expected.required == actual.required
