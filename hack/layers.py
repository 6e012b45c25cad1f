#!/usr/bin/env python3
"""Checks that crius's modules point one way: no top-level module of src/ reaches
another that reaches it back, and the declared order below holds.

A module is a top-level item of src/ (src/<m>.rs or src/<m>/). An edge m -> n is any
`crate::n` path in m's code (use lines and inline paths; comments are ignored).
Prints each import circle with the lines that close it; exits 1 if there is one.
"""
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
PATH = re.compile(r"\bcrate::(\w+)")
# Pairs (a, b): a must never import b, beyond what the circle check already says.
FORBIDDEN = [("sandbox", "container"), ("error", None)]


def module_of(rel):
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def code_lines(path):
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            yield n, line.split("//", 1)[0]


def edges():
    found = {}
    for root, _, files in os.walk(SRC):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, SRC)
            src = module_of(rel)
            if src == "main":
                continue
            for n, line in code_lines(path):
                for dst in PATH.findall(line):
                    if dst != src:
                        found.setdefault((src, dst), f"src/{rel}:{n}")
    return found


def circles(found):
    graph = {}
    for a, b in found:
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


def main():
    found = edges()
    bad = 0
    for trail in circles(found):
        bad += 1
        print("import circle: " + " -> ".join(trail))
        for a, b in zip(trail, trail[1:]):
            print(f"  {a} -> {b}: {found[(a, b)]}")
    for a, b in FORBIDDEN:
        for (x, y), where in sorted(found.items()):
            if x == a and (b is None or y == b):
                bad += 1
                print(f"forbidden: {x} -> {y}: {where}")
    mods = sorted({m for pair in found for m in pair})
    print(f"{len(mods)} modules, {len(found)} edges, {bad} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
