"""`python -m cgrad demo | train | bench`."""
import argparse
import sys


def needs(module, extra):
    """Stop before any work if an optional dependency is missing."""
    import importlib.util
    if importlib.util.find_spec(module) is None:
        sys.exit(f"cgrad: this needs {module}: pip install {extra}")


def main(argv=None):
    from cgrad._version import __version__
    parser = argparse.ArgumentParser(prog="cgrad", description="micrograd's engine in C: "
                                     "demo, replayed training and benchmarks")
    parser.add_argument("--version", action="version", version=f"cgrad {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train micrograd's moons demo (the main job)")
    demo.add_argument("--steps", type=int, default=100, help="training steps (default 100)")
    demo.add_argument("--compare-steps", type=int, default=3, metavar="N",
                      help="steps to time on the pure-Python reference (0: skip)")
    demo.add_argument("--plot", metavar="FILE.png",
                      help="save the decision boundary and loss curve (needs matplotlib)")

    train = sub.add_parser("train", help="train an MLP on the handwritten digits with "
                                         "graph replay (needs scikit-learn)")
    train.add_argument("--epochs", type=int, default=20, help="passes over the data (default 20)")
    train.add_argument("--batch-size", type=int, default=32, help="minibatch size (default 32)")
    train.add_argument("--hidden", type=int, nargs="+", default=[32], metavar="N",
                       help="hidden layer sizes (default: 32)")
    train.add_argument("--lr", type=float, default=0.01, help="Adam's learning rate (default 0.01)")
    train.add_argument("--seed", type=int, default=0, help="weights, split and shuffling")

    bench = sub.add_parser("bench", help="benchmark cgrad against the reference, "
                                         "micrograd and PyTorch")
    bench.add_argument("--quick", action="store_true", help="small sizes: seconds, not minutes")
    bench.add_argument("--json", metavar="FILE", help="save the raw results")
    bench.add_argument("--plot", metavar="FILE.png", help="bar chart of the ratios (matplotlib)")
    bench.add_argument("--scale", action="store_true",
                       help="replay at scale: training steps up to MNIST-sized MLPs against "
                            "PyTorch and JAX (when installed)")
    bench.add_argument("--layout", action="store_true",
                       help="first build and backward() on fresh, recycled and fragmented "
                            "heaps, 1e3 to 1e7 nodes, one process per cell")
    bench.add_argument("--microgpt", action="store_true",
                       help="only Karpathy's microgpt: on its own Value, on cgrad.Value, "
                            "written the cgrad way (eager and replayed), and the same model "
                            "in PyTorch and JAX")
    bench.add_argument("--parallel", action="store_true",
                       help="two independent training loops: one after the other, then "
                            "in two threads")
    bench.add_argument("--engine", action="append", metavar="NAME",
                       help="run only this engine (repeat for more), e.g. 'cgrad' or, "
                            "with --scale, 'cgrad replay'")
    bench.add_argument("--only", action="append", metavar="WORKLOAD",
                       help="run only this workload (repeat for more): build, "
                            "backward-wide, backward-chain, demo-step, wide-step, "
                            "digits-step, hvp, memory, depth")
    bench.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                       help="compare two runs saved with --json, workload by workload")

    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.steps < 1 or args.compare_steps < 0:
            parser.error("--steps must be >= 1 and --compare-steps >= 0")
        if args.plot:
            needs("matplotlib", "matplotlib")
        from cgrad.cli import demo
        return demo.main(args)
    if args.command == "train":
        if args.epochs < 1 or args.batch_size < 1 or min(args.hidden) < 1 or args.lr <= 0:
            parser.error("--epochs, --batch-size, --hidden and --lr must be positive")
        needs("sklearn", "scikit-learn")
        from cgrad.cli import train
        return train.main(args)
    if args.command == "bench" and args.plot:
        needs("matplotlib", "matplotlib")
    if args.command == "bench" and args.layout:
        from cgrad.cli import layout
        return layout.main(quick=args.quick, json_path=args.json)
    if args.command == "bench" and args.parallel:
        from cgrad.cli import parallel_bench
        print(parallel_bench.table(parallel_bench.measure("quick" if args.quick else "full")))
        return 0
    if args.command == "bench" and args.scale:
        from cgrad.cli import scale
        return scale.main(quick=args.quick, json_path=args.json, engines=args.engine)
    if args.command == "bench":
        from cgrad.cli import report
        return report.main(args)


if __name__ == "__main__":
    sys.exit(main())
