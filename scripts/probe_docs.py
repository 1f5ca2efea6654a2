#!/usr/bin/env python3
"""Rewrite the generated probe tables of the docs from results/probe.json (`make probe` runs it).

    python scripts/probe_docs.py results/probe.json README.md results/probe.md
    python scripts/probe_docs.py --check results/probe.json README.md results/probe.md

Each DOC may hold marked regions (`<!-- probe-table: begin -->` ... `<!-- probe-table: end -->`;
the names are those of rnnlm_cli.render.probe.doc_regions); each region it holds is replaced by
what the render function gives for the JSON now, and the tables are printed. With --check
nothing is written: exit 1 naming each region that differs.
"""

from __future__ import annotations

import argparse
import json
import sys

from rnnlm_cli.fileio import atomic_write_text
from rnnlm_cli.render.probe import doc_regions, horizon_table, region, render_table, replace_regions


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe_json")
    parser.add_argument("docs", nargs="+")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a region is stale")
    args = parser.parse_args(argv)
    with open(args.probe_json, encoding="utf-8") as fh:
        result = json.load(fh)
    bodies = doc_regions(result)
    stale = []
    for doc in args.docs:
        with open(doc, encoding="utf-8") as fh:
            text = fh.read()
        stale += [f"{doc}: {name}" for name, body in bodies.items() if region(text, name) not in (None, body)]
        if not args.check:
            new = replace_regions(text, bodies)
            if new != text:
                atomic_write_text(doc, new)
    if args.check:
        for line in stale:
            print(f"stale: {line}", file=sys.stderr)
        return 1 if stale else 0
    print(render_table(result))
    print()
    print(horizon_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
