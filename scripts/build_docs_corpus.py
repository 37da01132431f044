#!/usr/bin/env python
"""Build the English prose corpus docs_en from Debian's documentation packages, offline.

    python scripts/build_docs_corpus.py [--fetch] [--tokens] [--out data/real/docs/en] [--force]

--fetch first downloads the documentation packages (apt-get download, kept under .cache/docs-debs) and
unpacks them into .cache/docs-root (dpkg -x, no root); a package apt cannot fetch is a warning. The corpus
is built from those (testbed/data/docs.py), and with --system / also from the man and info pages installed on
the machine (the corpus then differs from machine to machine); --tokens then counts
its tokens with the docs tokenizer (configs/data/real.yaml) and records them in the manifest. Idempotent:
an up-to-date corpus is kept.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from testbed.data import docs
from testbed.errors import TestbedError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=docs.DEFAULT_OUT, help="output directory (default: %(default)s)")
    parser.add_argument("--root", type=Path, default=docs.DEFAULT_ROOT, help="unpacked packages (default: %(default)s)")
    parser.add_argument("--fetch", action="store_true", help="download and unpack the documentation packages first")
    parser.add_argument("--tokens", action="store_true", help="count the tokens of every split (docs tokenizer)")
    parser.add_argument(
        "--vocab", type=int, default=512, help="--tokens: the vocabulary (default: micro's, %(default)s)"
    )
    parser.add_argument(
        "--system",
        type=Path,
        help="also read the man and info pages installed under this root, e.g. / (machine-dependent; default: none)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when the inputs are unchanged")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.fetch:
        for note in docs.fetch_packages(root=args.root):
            print(note, file=sys.stderr if note.startswith("warning") else sys.stdout)
    try:
        manifest = docs.build(args.out, root=args.root, system=args.system, force=args.force)
        if args.tokens:
            from testbed.data.docs_tokens import count_tokens

            manifest = count_tokens(args.out, vocab=args.vocab)
    except TestbedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(docs.summary(manifest, args.out, time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
