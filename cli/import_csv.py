"""``floodwatch import-csv``: load historical readings so forecasts have history from day one.

Runnable as ``python -m floodwatch.cli.import_csv FILE``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from floodwatch import logs
from floodwatch.clock import SystemClock
from floodwatch.errors import FloodwatchError
from floodwatch.settings import load_settings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import-csv",
        help="load historical readings from CSV (ThaiWater export, logger dump)",
        description="Validate, QC-flag and store readings from CSV files. Columns are found by name "
        "(station_id/station_code, ts/datetime, water_level_m/waterlevel_msl, distance_m, rain_mm/rainfall, "
        "battery_v, rssi_dbm). Times without an offset are read in --tz. Rows already stored are skipped, "
        "so importing a file twice is harmless. Bad rows are counted with a reason and skipped.\n\n"
        "example: floodwatch import-csv exports/thachin-2025.csv --station LP-W01",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(p)
    p.set_defaults(run=run)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="CSV file(s) with a header row")
    p.add_argument("--station", default=None,
                   help="station id for every row (when the file has no station column)")
    p.add_argument("--tz", default="Asia/Bangkok",
                   help="time zone of times without an offset (default Asia/Bangkok)")


def run(args: argparse.Namespace) -> int:
    from floodwatch import store
    from floodwatch.ingest.csv_import import RowError, import_csv

    try:
        settings = load_settings()
        st = store.open_store(settings)
    except FloodwatchError as exc:
        print(f"error: {logs.scrub(str(exc))}", file=sys.stderr)
        return 1
    status = 0
    try:
        for path in args.files:
            if not path.is_file():
                print(f"error: {path} does not exist", file=sys.stderr)
                status = 1
                continue

            def progress(r: object, path: Path = path) -> None:
                print(f"\r{path.name}: {r.rows} rows read, {r.stored} stored", end="", file=sys.stderr, flush=True)  # type: ignore[attr-defined]

            try:
                result = import_csv(path, settings, st, SystemClock().now_s(), station=args.station, tz=args.tz,
                                    progress=progress)
            except (RowError, FloodwatchError, UnicodeDecodeError) as exc:
                print(f"\nerror: {path}: {exc}", file=sys.stderr)
                status = 1
                continue
            print(file=sys.stderr)
            print(f"{path}: rows {result.rows}, stored {result.stored}, duplicates {result.duplicates}, "
                  f"rejected {result.rejected}")
            for reason, n in result.reasons.most_common():
                print(f"  rejected {reason}: {n}")
            for example in result.examples:
                print(f"  e.g. {example}")
    finally:
        st.close()
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m floodwatch.cli.import_csv", description=__doc__)
    _add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
