"""Run every benchmark: ``python -m bench`` (or ``bench/run``); ``--quick`` for a short pass.

Prints each table, writes ``bench/results/<name>.json`` / ``.md`` and a combined
``bench/results/summary.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import gateway, recovery, simulator
from bench.common import RESULTS, console, install_signal_handlers, machine_info


def write_summary(out: Path, sections: list[str]) -> Path:
    info = machine_info()
    header = (
        "# Lipwa benchmark summary\n\n"
        f"{info['at']} · {info['cpus']} CPUs · load average at the end {info['load_avg_1m']} · "
        f"Python {info['python']} · commit {info['git_commit']}"
        f"{' (dirty tree)' if info['git_dirty'] else ''}\n\n"
        "Numbers from a shared machine are noisy: compare rows of one run, not runs of "
        "different days; CPU ms per request is the steadier figure. CPU% is percent of one "
        "core; pg CPU% counts every postgres process on the machine. See bench/README.md.\n\n"
    )
    summary = out / "summary.md"
    summary.write_text(header + "\n".join(sections))
    return summary


def main(argv: list[str] | None = None) -> None:
    install_signal_handlers()
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes: a minute or two")
    p.add_argument("--db", default="sqlite,postgres", help="databases of the gateway benchmark")
    p.add_argument("--workers", default="1,2", help="gateway worker counts")
    p.add_argument("--only", choices=("simulator", "gateway", "recovery"),
                   help="run just one benchmark")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = p.parse_args(argv)

    sections: list[str] = []
    if args.only in (None, "simulator"):
        sim_args = ["--out", str(args.out)]
        if args.quick:
            sim_args += ["--requests", "500"]
        sim_config = simulator.config_from(simulator.parser().parse_args(sim_args))
        simulator.report(sim_config, simulator.run(sim_config))
        sections.append((args.out / f"{simulator.NAME}.md").read_text())
    if args.only in (None, "gateway"):
        gw_args = ["--out", str(args.out), "--db", args.db, "--workers", args.workers]
        if args.quick:
            gw_args += ["--warmup", "2", "--duration", "5"]
        gw_config = gateway.config_from(gateway.parser().parse_args(gw_args))
        gateway.report(gw_config, gateway.run(gw_config))
        sections.append((args.out / f"{gateway.NAME}.md").read_text())

    if args.only in (None, "recovery"):
        rec_args = ["--out", str(args.out)]
        if args.quick:
            rec_args += ["--payments", "1000", "--paced-payments", "100", "--workers", "1"]
        rec_config = recovery.config_from(recovery.parser().parse_args(rec_args))
        recovery.report(rec_config, recovery.run(rec_config))
        sections.append((args.out / f"{recovery.NAME}.md").read_text())

    summary = write_summary(args.out, sections)
    console.print(f"summary: {summary}")


if __name__ == "__main__":
    main()
