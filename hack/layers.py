#!/usr/bin/env python3
"""Checks that crius's imports point one way.

Two graphs are built from the code (use lines, brace groups expanded, and inline paths;
comments ignored):
- files: src/a/b.rs -> src/c.rs when b.rs names `crate::c::...`, `super::...` or
  `self::...` items, or items of a child module it declares;
- modules: the same edges folded onto the top-level items of src/ (src/<m>.rs, src/<m>/).
Neither may have a circle. On top, `sandbox` never imports `container`, and `error`
imports nothing of the crate. Prints each problem with the lines that cause it; exits 1
if there is one.
"""
import os
import re
import sys

SRC = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
FORBIDDEN = [("sandbox", "container"), ("error", None)]
USE = re.compile(r"\buse\s+([^;]+);", re.S)
PATH = re.compile(r"\b((?:crate|super|self)(?:::\w+)+)")
MOD = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", re.M)


def module_path(rel):
    """src-relative file -> its module path (a list of names)."""
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod", "main"):
        parts = parts[:-1]
    return parts


def file_of(mod):
    """The file that defines module `mod`, or None."""
    if not mod:
        return "main.rs"
    base = os.path.join(*mod)
    for cand in (base + ".rs", os.path.join(base, "mod.rs")):
        if os.path.isfile(os.path.join(SRC, cand)):
            return cand
    return None


def expand(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = re.sub(r"\s+", "", tree)
    depth, start, out = 0, None, []
    i = tree.find("{")
    if i < 0:
        return [tree.split(" as ")[0]]
    prefix, body = tree[:i], tree[i + 1 : tree.rfind("}")]
    parts, cur = [], ""
    for ch in body:
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    for p in filter(None, parts):
        out.extend(expand(prefix + p))
    return out


def target(here, path, children):
    """The file a path names, resolved from module `here`."""
    segs = path.split("::")
    if segs[0] == "crate":
        base, rest = [], segs[1:]
    elif segs[0] in ("super", "self"):
        base = list(here)
        while segs and segs[0] in ("super", "self"):
            if segs.pop(0) == "super":
                base = base[:-1]
        rest = segs
    elif segs[0] in children:
        base, rest = list(here), segs
    else:
        return None
    for n in range(len(rest), -1, -1):
        f = file_of(base + rest[:n])
        if f:
            return f
    return None


INLINE_TESTS = re.compile(r"^\s*#\[cfg\(test\)\]\s*\n\s*mod\s+\w+\s*\{", re.M)


def strip_comments(text):
    """Code without comments, and without an inline `#[cfg(test)] mod tests { .. }` at
    the end: test modules are leaves, and their `super::` is the file itself."""
    m = INLINE_TESTS.search(text)
    if m:
        text = text[: m.start()]
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def file_edges():
    found = {}
    for root, _, files in os.walk(SRC):
        for name in sorted(files):
            if not name.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, name), SRC)
            here = module_path(rel)
            with open(os.path.join(SRC, rel), encoding="utf-8") as f:
                text = strip_comments(f.read())
            children = set(MOD.findall(text))
            paths = [p for u in USE.findall(text) for p in expand(u)]
            paths += PATH.findall(USE.sub("", text))
            for p in paths:
                dst = target(here, p, children)
                if dst and dst != rel and not is_child(rel, dst, children):
                    line = next((i + 1 for i, l in enumerate(text.splitlines()) if p.split("::")[-1] in l), 0)
                    found.setdefault((rel, dst), f"src/{rel}:{line} ({p})")
    return found


def is_child(rel, dst, children):
    """A module declaring `mod x;` owns x: naming it is not an import back."""
    here = module_path(rel)
    return any(dst == file_of(here + [c]) for c in children)


def top(rel):
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def circles(edges):
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    out = []
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    out.append(trail + [start])
                elif nxt not in trail and nxt > start:
                    stack.append((nxt, trail + [nxt]))
    return out


def report(kind, edges):
    bad = 0
    for trail in circles(edges):
        bad += 1
        print(f"{kind} import circle: " + " -> ".join(trail))
        for a, b in zip(trail, trail[1:]):
            print(f"  {a} -> {b}: {edges[(a, b)]}")
    return bad


def main():
    files = file_edges()
    modules = {}
    for (a, b), where in files.items():
        if top(a) != top(b) and top(a) != "main":
            modules.setdefault((top(a), top(b)), where)
    bad = report("file", files) + report("module", modules)
    for a, b in FORBIDDEN:
        for (x, y), where in sorted(modules.items()):
            if x == a and (b is None or y == b):
                bad += 1
                print(f"forbidden: {x} -> {y}: {where}")
    print(f"{len({f for e in files for f in e})} files, {len(files)} file edges, "
          f"{len(modules)} module edges, {bad} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
