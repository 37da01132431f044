#!/usr/bin/env python
"""Build the real multilingual corpus (en/de/fr/ro text, en-de/en-fr/en-ro pairs) offline.

    python scripts/build_real_corpus.py [--fetch] [--out data/real] [--root DIR ...] [--force]

Reads gettext catalogs and man pages under / and under every --root (e.g. Debian packages unpacked
with `apt-get download` + `dpkg -x`; `make real-data` does that into .cache/real-root), cleans and
splits them (testbed/data/real.py), and prints the counts. Idempotent: an up-to-date corpus is kept.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from testbed.data import real
from testbed.errors import TestbedError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=real.DEFAULT_OUT, help="output directory (default: %(default)s)")
    parser.add_argument(
        "--root",
        type=Path,
        action="append",
        default=[],
        help="an extra file-system root to read catalogs and man pages from (repeatable)",
    )
    parser.add_argument("--languages", default=",".join(real.LANGUAGES), help="default: %(default)s")
    parser.add_argument(
        "--fetch",
        action="store_true",
        help=f"first unpack {', '.join(real.EXTRA_PACKAGES)} into {real.DEFAULT_EXTRA_ROOT} "
        "(apt-get download + dpkg -x; no root needed)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when the inputs are unchanged")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.fetch:
        print(real.fetch_packages())
    try:
        manifest = real.build(
            args.out, roots=real.default_roots(args.root), languages=tuple(args.languages.split(",")), force=args.force
        )
    except TestbedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(real.summary(manifest, args.out, time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
