#!/usr/bin/env python3
"""Check that the crate's module graph is a DAG: among the children of every module (the crate's
top-level modules, the files of `http/`, of `supervisor/`, ...), no module reaches back to one
that reaches it. Also check the spine of docs/ARCHITECTURE.md: each module on it is above the
next, so nothing below may reach anything above.

An edge A → B is any path that names B from inside A: `use crate::b::…`, `crate::b::x(…)`,
`super::b`, `self::b`, in code and in unit tests alike (comments and string literals do not
count). Edges between a module and its own ancestors (a child using its parent's items) are how
Rust modules work and are not counted.

Usage: build/check-layers.py          # exit 1 and name every cycle when the graph is not a DAG
       build/check-layers.py --print  # also print the top-level modules layer by layer
"""

import os
import re
import sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

# Each module is above the next: main → cli → app → http → service → node → the engines → the base.
SPINE = [
    ["cli"],
    ["app"],
    ["http"],
    ["service"],
    ["node"],
    ["supervisor", "checkpoint", "replication", "lease", "store"],
    ["objstore", "proc", "config", "events"],
]

MOD_DECL = re.compile(r'(?:#\[path\s*=\s*"([^"]+)"\]\s*)?(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;')
INLINE_MOD = re.compile(r"\bmod\s+(\w+)\s*\{")
PATH = re.compile(r"(?<![\w:])((?:crate|super|self)(?:::(?:\w+|\{))+)")


def strip(text, strings=True):
    """The source without comments and (unless `strings` is false) with the contents of string
    and char literals blanked out."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif not strings:
            out.append(c)
            i += 1
        elif (m := re.match(r'b?r(#*)"', text[i:])) and (i == 0 or not text[i - 1].isalnum()):
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            out.append('""')
            i = n if j < 0 else j + len(end)
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""')
            i = j + 1
        elif c == "'" and (m := re.match(r"'(\\.[^']*|[^\\'])'", text[i:])):
            out.append("' '")
            i += m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand(tree):
    """`a::{b, c::{d, self}}` → ['a::b', 'a::c::d', 'a::c']."""
    tree = tree.replace(" ", "").replace("\n", "")
    depth, brace = 0, None
    for k, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                brace = k
            depth += 1
        elif ch == "}":
            depth -= 1
    if brace is None:
        return [tree.removesuffix("::self")]
    prefix, inner = tree[:brace].rstrip(":"), tree[brace + 1 : tree.rfind("}")]
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(inner[start:k])
            start = k + 1
    parts.append(inner[start:])
    paths = []
    for p in filter(None, parts):
        for sub in expand(p):
            paths.append(prefix if sub == "self" else f"{prefix}::{sub}")
    return paths


def discover():
    """Every module of the crate: its path (a tuple of names) → (file, first line of its body)."""
    modules = {(): os.path.join(ROOT, "lib.rs")}
    todo = [()]
    while todo:
        mod = todo.pop()
        path = modules[mod]
        base = os.path.basename(path)
        here = os.path.dirname(path)
        children_dir = here if base in ("lib.rs", "mod.rs") else os.path.join(here, base[:-3])
        for m in MOD_DECL.finditer(strip(open(path).read(), strings=False)):
            attr, name = m.groups()
            if attr:
                child = os.path.join(here, attr)
            else:
                child = os.path.join(children_dir, name + ".rs")
                if not os.path.exists(child):
                    child = os.path.join(children_dir, name, "mod.rs")
            modules[mod + (name,)] = child
            todo.append(mod + (name,))
    return modules


def inline_scopes(code):
    """(start, end, name) of every inline `mod name { … }` block in `code`."""
    scopes = []
    for m in INLINE_MOD.finditer(code):
        depth, k = 0, m.end() - 1
        while k < len(code):
            depth += {"{": 1, "}": -1}.get(code[k], 0)
            if depth == 0:
                break
            k += 1
        scopes.append((m.start(), k, m.group(1)))
    return scopes


def references(modules):
    """(from-module, to-module) for every path in the code, resolved to the longest module."""
    known = set(modules)
    refs = set()
    for mod, path in modules.items():
        code = strip(open(path).read())
        scopes = inline_scopes(code)
        uses = [(m.start(), m.group(1)) for m in re.finditer(r"\buse\s+([^;]+);", code)]
        inline = [(m.start(), m.group(1)) for m in PATH.finditer(code)]
        for at, tree in uses + inline:
            here = mod + tuple(n for s, e, n in sorted(scopes) if s < at < e)
            for p in expand(tree) if "{" in tree else [tree]:
                parts = [x for x in p.split("::") if x]
                if not parts or parts[0] not in ("crate", "super", "self"):
                    continue
                if parts[0] == "crate":
                    target, parts = (), parts[1:]
                else:
                    target = here
                    while parts and parts[0] in ("super", "self"):
                        target = target[:-1] if parts.pop(0) == "super" else target
                while target not in known:
                    target = target[:-1]
                for name in parts:
                    if target + (name,) not in known:
                        break
                    target += (name,)
                refs.add((mod, target))
    return refs


def sibling_edges(refs):
    """For each parent module, the edges between its children."""
    graphs = defaultdict(lambda: defaultdict(set))
    for a, b in refs:
        k = 0
        while k < min(len(a), len(b)) and a[k] == b[k]:
            k += 1
        if k == len(a) or k == len(b):
            continue  # an ancestor or a descendant
        graphs[a[:k]][a[k]].add(b[k])
    return graphs


def cycles(graph):
    """The strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def layers(graph, nodes):
    """Modules top-down, each one layer above the highest module it uses: every edge points to a
    later layer, and the base (what uses nothing of ours) is the last."""
    depth = {}

    def d(v):
        if v not in depth:
            depth[v] = 0
            depth[v] = 1 + max((d(w) for w in graph.get(v, ())), default=-1)
        return depth[v]

    by = defaultdict(list)
    for v in nodes:
        by[d(v)].append(v)
    return [sorted(by[k]) for k in sorted(by, reverse=True)]


def reaches(graph, a, b):
    seen, todo = set(), [a]
    while todo:
        v = todo.pop()
        for w in graph.get(v, ()):
            if w == b:
                return True
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return False


def main():
    modules = discover()
    graphs = sibling_edges(references(modules))
    problems = []
    for parent, graph in sorted(graphs.items()):
        for comp in cycles(graph):
            where = "::".join(parent) or "the crate"
            detail = "; ".join(
                f"{a} → {', '.join(sorted(set(graph[a]) & set(comp)))}" for a in comp
            )
            problems.append(f"cycle among the modules of {where}: {detail}")
    top = graphs[()]
    names = sorted({m[0] for m in modules if m})
    problems += [f"{m} is on the spine but not a module" for r in SPINE for m in r if m not in names]
    for hi, row in enumerate(SPINE):
        for lower in SPINE[hi + 1 :]:
            for a in row:
                for b in lower:
                    if reaches(top, b, a):
                        problems.append(f"{b} is below {a} on the spine but reaches it")
    if "--print" in sys.argv and not problems:
        for row in layers(top, names):
            print("  ".join(row))
    for p in problems:
        print(f"check-layers: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    total = sum(len(e) for g in graphs.values() for e in g.values())
    print(f"check-layers: {len(modules)} modules, {total} edges between siblings, no cycle")


if __name__ == "__main__":
    main()
