"""`python -m cgrad demo | train | bench`."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="cgrad", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="benchmark cgrad against the reference, "
                                         "micrograd and PyTorch")
    bench.add_argument("--quick", action="store_true", help="small sizes: seconds, not minutes")
    bench.add_argument("--json", metavar="FILE", help="save the raw results")
    bench.add_argument("--plot", metavar="FILE.png", help="bar chart of the ratios (matplotlib)")

    args = parser.parse_args(argv)
    if args.command == "bench":
        from cgrad import report
        return report.main(args)


if __name__ == "__main__":
    sys.exit(main())
