#!/usr/bin/env python3
"""Shrinks a target's corpus to what may be committed: every `seed-*` file, then the
fuzzer's finds that add the most coverage edges, each under 4 KiB, at most 299 files.

Usage, from `fuzz/` after `cargo +nightly fuzz build`:

    python3 select_corpus.py TARGET

libFuzzer's merge (`-merge=1 -use_counters=0`, so a feature is an edge, not an edge
hit count) records which edges each input covers in a control file; a greedy set
cover over those edges, seeds first, picks the rest. Files not picked are deleted from
`corpus/TARGET/`; the script prints how many edges the kept files cover.
"""

import os
import subprocess
import sys
import tempfile

MAX_FILES = 299
MAX_SIZE = 4095


def coverage(binary, corpus):
    """Maps each corpus file to the set of edges it covers."""
    with tempfile.TemporaryDirectory() as scratch:
        control = os.path.join(scratch, "control")
        out = os.path.join(scratch, "out")
        os.mkdir(out)
        subprocess.run(
            [binary, "-merge=1", "-use_counters=0", f"-merge_control_file={control}", out, corpus],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with open(control) as f:
            lines = f.read().splitlines()
    count = int(lines[0])
    files = lines[2 : 2 + count]
    edges = {}
    for line in lines[2 + count :]:
        parts = line.split()
        if parts and parts[0] == "COV":
            edges[files[int(parts[1])]] = set(map(int, parts[2:]))
    return edges


def main():
    target = sys.argv[1]
    binary = os.path.join("target", "x86_64-unknown-linux-gnu", "release", target)
    corpus = os.path.join("corpus", target)
    edges = coverage(binary, corpus)
    every = set().union(*edges.values()) if edges else set()
    paths = [os.path.join(corpus, name) for name in os.listdir(corpus)]
    seeds = [p for p in paths if os.path.basename(p).startswith("seed-")]
    candidates = [p for p in paths if p not in seeds and os.path.getsize(p) <= MAX_SIZE and p in edges]
    kept = list(seeds)
    covered = set().union(*(edges.get(p, set()) for p in seeds)) if seeds else set()
    while len(kept) < MAX_FILES and candidates:
        best = max(candidates, key=lambda p: (len(edges[p] - covered), -os.path.getsize(p)))
        gain = edges[best] - covered
        if not gain:
            break
        kept.append(best)
        covered |= gain
        candidates.remove(best)
    for path in paths:
        if path not in kept:
            os.remove(path)
    print(f"{target}: kept {len(kept)} files ({len(seeds)} seeds), {len(covered)} of {len(every)} edges")


if __name__ == "__main__":
    main()
