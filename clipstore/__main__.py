"""Command line: ``python -m clipstore inspect PATH`` prints what a clip store or feature store holds."""

from __future__ import annotations

import argparse
import sys

from clipstore.errors import StoreError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clipstore",
        description="Look inside the project's Zarr stores (layouts: docs/stores.md).")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser(
        "inspect", help="what a store holds",
        description="Clips per split, frames, resolution, arrays with shapes and dtypes, class names, provenance, "
                    "completeness and skipped clips of a clip store (results/data/NAME.zarr); model, timestep, "
                    "frames and layers of a feature store (one shard-K.zarr, or the folder of its shards).")
    inspect.add_argument("paths", nargs="+", metavar="PATH")
    args = parser.parse_args(argv)

    from clipstore.inspect import describe

    status = 0
    for path in args.paths:
        try:
            print(describe(path))
        except StoreError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
