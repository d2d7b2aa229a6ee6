#!/usr/bin/env python
"""Render the tables in README.md and docs/*.md from the result files under results/.

Each table sits between `<!-- table KIND results/FILE.json -->` and `<!-- end table -->`
(kinds: pasa_det/analysis/tables.py). After a benchmark or comparison writes its JSON
under results/, run this and commit both.

    python tools/render_docs.py            # rewrite the tables in place
    python tools/render_docs.py --check    # exit 1, naming the files, if any table is stale
"""

import argparse
import glob
import os
import sys

from pasa_det.analysis.tables import render_document

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def documents():
    return [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="change nothing; fail if stale")
    args = parser.parse_args(argv)
    stale = []
    for path in documents():
        with open(path) as f:
            text = f.read()
        try:
            rendered = render_document(text, ROOT)
        except (FileNotFoundError, ValueError, KeyError) as e:
            print(f"error: {os.path.relpath(path, ROOT)}: {e}", file=sys.stderr)
            return 2
        if rendered != text:
            stale.append(os.path.relpath(path, ROOT))
            if not args.check:
                with open(path, "w") as f:
                    f.write(rendered)
    if args.check and stale:
        print(
            f"stale tables in {', '.join(stale)}: run `python tools/render_docs.py`",
            file=sys.stderr,
        )
        return 1
    if not args.check:
        print(f"rendered: {', '.join(stale) or 'nothing changed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
