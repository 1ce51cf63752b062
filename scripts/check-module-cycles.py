#!/usr/bin/env python3
"""Fails when modules of one crate depend on each other in a cycle (CODE_STYLE.md: a lower
module never `use`s the one built on it).

Reads the sources, builds nothing. For every crate's `src/` tree (and the e2e test crate), each
`crate::`, `super::` and `self::` path outside `#[cfg(test)]` modules is resolved to the module
it names. A reference between two modules that are not ancestor and descendant is an edge
between the two siblings under their common ancestor (`crate::routes::status` naming
`crate::openapi` is an edge `routes -> openapi`); a parent and its children may name each other
freely. Every strongly connected set of siblings is reported with the lines that make it.

Usage: scripts/check-module-cycles.py [ROOT]   (ROOT: the workspace, default: this repository)
It checks itself first on two small made-up crates, so a broken parser cannot pass silently.
"""

import os
import re
import sys
import tempfile

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(src):
    """`src` with comments removed and string/char literals emptied (newlines kept, so line
    numbers still hold)."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if src[i] == "\n":
                        out.append("\n")
                    i += 1
        elif c == "r" and re.match(r'r#*"', src[i:]) and re.match(r"[^\w]|b", src[i - 1 : i] or " "):
            m = re.match(r'r(#*)"', src[i:])
            end = '"' + m.group(1)
            j = src.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * src.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append('""' + "\n" * src.count("\n", i, j))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}'), else a lifetime or label ('a).
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", src[i:])
            if m:
                out.append("' '")
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def use_paths(tree):
    """The full paths a `use` tree names: `crate::{a::X, b::{Y, Z}}` -> crate::a::X, ..."""
    tree = re.sub(r"\s*([:{},])\s*", r"\1", tree.strip())
    paths = []

    def walk(prefix, s):
        # s is a comma-separated list of subtrees (top level of braces).
        depth, start, parts = 0, 0, []
        for k, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(s[start:k])
                start = k + 1
        parts.append(s[start:])
        for part in filter(None, parts):
            brace = part.find("{")
            if brace >= 0:
                head = part[:brace].rstrip(":")
                walk(prefix + ([head] if head else []), part[brace + 1 : part.rfind("}")])
            else:
                path = re.sub(r"\s+as\s+\w+$", "", part)
                paths.append("::".join(prefix + [path]))

    walk([], tree)
    return paths


def module_of(rel):
    """The module path of a file under src/ (`a/b.rs` -> [a, b]); None for another crate root."""
    parts = rel[:-3].split(os.sep)
    if parts[0] == "bin":
        return None
    if parts[-1] in ("lib", "main") and len(parts) == 1:
        return []
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts


TEST_ATTR = re.compile(r"#\[cfg\((?:[^\[\]]*\W)?test\W[^\[\]]*\]")


def references(text, file_module):
    """(module path where it is used, path text, line) for every crate-relative path, skipping
    `#[cfg(test)]` modules; also returns the inline modules declared and the file modules
    declared test-only (`#[cfg(test)] mod x;`)."""
    refs, inline, test_files = [], [], []
    stack = []  # (module path, brace depth at which it closes, is_test)
    depth = 0
    token = re.compile(
        r"(?P<mod>(?P<attr>(?:#\[[^\]]*\]\s*)*)(?:\bpub(?:\([^)]*\))?\s+)?\bmod\s+(?P<name>"
        + IDENT
        + r")\s*(?P<body>[{;]))"
        r"|(?P<use>\buse\s+(?P<tree>[^;]*);)"
        r"|(?P<path>(?<![\w$:])(?:crate|super|self)(?:::" + IDENT + r")+)"
        r"|(?P<open>\{)|(?P<close>\})"
    )
    for m in token.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        current = stack[-1][0] if stack else file_module
        in_test = any(t for _, _, t in stack)
        if m.group("mod"):
            is_test = in_test or bool(TEST_ATTR.search(m.group("attr")))
            path = current + [m.group("name")]
            if m.group("body") == ";":
                if is_test:
                    test_files.append(path)
                continue
            depth += 1
            stack.append((path, depth, is_test))
            inline.append(path)
        elif m.group("open"):
            depth += 1
        elif m.group("close"):
            if stack and stack[-1][1] == depth:
                stack.pop()
            depth -= 1
        elif in_test:
            continue
        elif m.group("use"):
            for p in use_paths(m.group("tree")):
                if re.match(r"(crate|super|self)(::|$)", p):
                    refs.append((current, p, line))
        elif m.group("path"):
            refs.append((current, m.group("path"), line))
    return refs, inline, test_files


def resolve(current, path, modules):
    """The module a path names (its longest prefix that is a module), or None."""
    segs = path.split("::")
    if segs[0] == "crate":
        base, rest = [], segs[1:]
    else:
        base, rest = list(current), segs
        while rest and rest[0] in ("self", "super"):
            if rest.pop(0) == "super":
                if not base:
                    return None
                base.pop()
    best = list(base)
    for k in range(1, len(rest) + 1):
        if tuple(base + rest[:k]) in modules:
            best = base + rest[:k]
    return best


def strongly_connected(graph):
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

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
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                out.append(sorted(scc))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def crate_cycles(src_dir):
    """Cycles of one crate: [(modules in the cycle, [(from, to, file:line)])]."""
    files = {}
    for dirpath, _, names in os.walk(src_dir):
        for name in names:
            if name.endswith(".rs"):
                full = os.path.join(dirpath, name)
                mod = module_of(os.path.relpath(full, src_dir))
                if mod is not None:
                    files[full] = mod
    modules, parsed, test_only = {tuple(m) for m in files.values()}, [], []
    for full, mod in sorted(files.items()):
        with open(full, encoding="utf-8") as f:
            refs, inline, tests = references(strip(f.read()), mod)
        modules.update(tuple(p) for p in inline)
        test_only.extend(tests)
        parsed.append((full, refs))
    graph, why = {}, {}
    for full, refs in parsed:
        if any(files[full][: len(t)] == t for t in test_only):
            continue
        for current, path, line in refs:
            target = resolve(current, path, modules)
            if target is None:
                continue
            k = 0
            while k < min(len(current), len(target)) and current[k] == target[k]:
                k += 1
            if k == len(current) or k == len(target):
                continue  # the same module, an ancestor or a descendant
            a, b = "::".join(current[: k + 1]), "::".join(target[: k + 1])
            graph.setdefault(a, set()).add(b)
            why.setdefault((a, b), f"{full}:{line} ({path})")
    found = []
    for scc in strongly_connected(graph):
        inside = set(scc)
        edges = [(a, b, why[(a, b)]) for a in scc for b in sorted(graph.get(a, ())) if b in inside]
        found.append((scc, edges))
    return found


def src_dirs(root):
    dirs = []
    for dirpath, subdirs, names in os.walk(root):
        subdirs[:] = [d for d in subdirs if d not in ("target", "node_modules", ".git", ".roar")]
        if "Cargo.toml" in names and os.path.isdir(os.path.join(dirpath, "src")):
            dirs.append(os.path.join(dirpath, "src"))
    e2e = os.path.join(root, "tests", "e2e")
    if os.path.isfile(os.path.join(e2e, "main.rs")):
        dirs.append(e2e)
    return sorted(dirs)


def self_test():
    """Two made-up crates: one with a cycle hidden behind a `use` tree and a `super::` path,
    one whose references are all allowed; the check must tell them apart."""
    cyclic = {
        "lib.rs": "mod a;\nmod b;\nmod c;\n",
        "a.rs": "use crate::{c::C, b::{self as bee}};\n",
        "b/mod.rs": "mod inner;\n",
        "b/inner.rs": "fn f() { super::super::c::g() }\n",
        "c.rs": '// use crate::a;\nconst S: &str = "crate::a::x /*";\n'
        "pub fn g() { crate::a::A }\n",
    }
    clean = {
        "lib.rs": "mod a;\nmod b;\npub use a::A;\n",
        "a.rs": "use crate::b::B;\nfn f(x: &'static str) -> char { '{' }\n"
        "#[cfg(test)]\n#[allow(unused)]\nmod tests;\n",
        "a/tests.rs": "use crate::b::*;\n",
        "b.rs": "use super::*;\nuse crate::A;\n#[cfg(test)]\nmod tests {\n"
        "    fn t() { let _ = \"}\"; let _ = '}'; let _ = r#\"}\"#; }\n"
        "    fn u() { crate::a::f() }\n}\n",
    }
    for files, want in ((cyclic, [["a", "b", "c"]]), (clean, [])):
        with tempfile.TemporaryDirectory() as d:
            for rel, text in files.items():
                os.makedirs(os.path.dirname(os.path.join(d, rel)), exist_ok=True)
                with open(os.path.join(d, rel), "w", encoding="utf-8") as f:
                    f.write(text)
            got = [scc for scc, _ in crate_cycles(d)]
            if got != want:
                sys.exit(f"check-module-cycles self-test: found {got}, expected {want}")


def main():
    self_test()
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    root = os.path.abspath(root)
    bad = 0
    for src in src_dirs(root):
        for scc, edges in crate_cycles(src):
            bad += 1
            print(f"module cycle in {os.path.relpath(src, root)}: {' <-> '.join(scc)}")
            for a, b, where in edges:
                print(f"  {a} -> {b}: {os.path.relpath(where, root)}")
    if bad:
        sys.exit(f"{bad} module cycle(s)")
    print("no module cycles")


if __name__ == "__main__":
    main()
