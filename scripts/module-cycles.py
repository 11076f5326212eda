#!/usr/bin/env python3
"""Import cycles between the modules (files) of realsyn's crates.

    scripts/module-cycles.py [CRATE_SRC ...]     # default: crates/*/src

A module is a file (`a/b.rs` or `a/b/mod.rs` is `a::b`); module A uses B when A's
code (comments and the `#[cfg(test)] mod tests` block left out) names `crate::B...`,
`super::B...` or B in a grouped `crate::{...}`. Prints each cycle (a strongly
connected component of more than one module) and exits 1 when there is any.
"""
import glob
import os
import re
import sys


def graph(root):
    mods = {}
    for dp, _, files in os.walk(root):
        for f in files:
            if f.endswith(".rs"):
                p = os.path.join(dp, f)
                rel = os.path.relpath(p, root)[:-3].split(os.sep)
                if rel[-1] in ("mod", "lib", "main"):
                    rel = rel[:-1]
                mods["::".join(rel)] = p

    def resolve(path):
        parts = [x for x in path.split("::") if x and x != "self"]
        for i in range(len(parts), -1, -1):
            k = "::".join(parts[:i])
            if k in mods:
                return k
        return None

    edges = {m: set() for m in mods}
    for m, p in mods.items():
        s = open(p, encoding="utf-8").read()
        s = re.sub(r"//.*", "", s)
        s = re.sub(r"#\[cfg\(test\)\]\s*mod tests \{.*", "", s, flags=re.S)
        here = m.split("::") if m else []

        def add(t):
            if t is not None and t != m and not m.startswith(t + "::"):
                edges[m].add(t)

        for mo in re.finditer(r"crate::((?:\w+::)*)\{([^}]*)\}", s):
            for item in mo.group(2).split(","):
                item = item.strip().split(" as ")[0].strip()
                if item:
                    add(resolve(mo.group(1) + item))
        for mo in re.finditer(r"crate::(\w+(?:::\w+)*)", s):
            add(resolve(mo.group(1)))
        for mo in re.finditer(r"\bsuper::(\w+(?:::\w+)*)", s):
            add(resolve("::".join(here[:-1] + mo.group(1).split("::"))))
    return edges


def cycles(edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    sys.setrecursionlimit(100000)

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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

    for v in edges:
        if v not in index:
            visit(v)
    return out


def main():
    roots = sys.argv[1:] or sorted(glob.glob("crates/*/src"))
    found = 0
    for root in roots:
        edges = graph(root)
        for c in cycles(edges):
            print(f"{root}: cycle between {', '.join(c)}")
            found += 1
        print(f"{root}: {len(edges)} modules, {len(cycles(edges))} cycles", file=sys.stderr)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
