"""Draw a run's validation AP50 (and AP) against wall-clock minutes, from its CSV log.

    pip install -e ".[plot]"
    python benchmarks/plot_learning_curve.py outputs/DATE/TIME --out docs/shapes_quick_ap50.png

Reads ``<run>/csv/metrics.csv`` (``logger=csv``; ``experiment=shapes_quick`` writes it), whose
validation rows carry ``time/elapsed_min`` (``frcnn.lit.monitoring.ElapsedTime``: minutes since
the run started, data set generation included).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

MINUTES, AP50, AP = "time/elapsed_min", "val/map_50", "val/map"


def validation_points(metrics_csv: Path) -> list[tuple[float, int, float, float]]:
    """``(minutes, steps trained, AP50, AP)`` of every validation in the file, in order (the CSV's
    ``step`` of a validation row is the index of the last step, counted from 0)."""
    points = []
    with open(metrics_csv, newline="") as file:
        for row in csv.DictReader(file):
            if row.get(AP50) and row.get(MINUTES):
                points.append((float(row[MINUTES]), int(row["step"]) + 1, float(row[AP50]), float(row[AP])))
    if not points:
        raise SystemExit(f"error: {metrics_csv} has no validation rows with {MINUTES}: was the run logged with logger=csv?")
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="the run's folder (holds csv/metrics.csv)")
    parser.add_argument("--out", type=Path, default=Path("docs/shapes_quick_ap50.png"))
    parser.add_argument("--title", default="experiment=shapes_quick, 2 CPU cores")
    args = parser.parse_args()
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit('error: matplotlib is not installed: pip install -e ".[plot]"') from None

    points = validation_points(args.run_dir / "csv" / "metrics.csv")
    minutes, steps, ap50, ap = zip(*points)
    figure, axes = plt.subplots(figsize=(6, 3.6), dpi=120)
    axes.plot(minutes, ap50, "o-", label="AP50")
    axes.plot(minutes, ap, "s--", label="AP (0.5:0.95)")
    axes.axhline(0.7, color="grey", linestyle=":", linewidth=1)
    axes.axvline(10, color="grey", linestyle=":", linewidth=1)
    for minute, step, value in zip(minutes, steps, ap50):
        axes.annotate(f"{step} steps", (minute, value), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    axes.set(xlabel="wall-clock minutes (data generation included)", ylabel="val COCO AP", ylim=(0, 1), title=args.title)
    axes.set_xlim(left=0)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left")
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out)
    print(f"{args.out}: {len(points)} validations, last AP50 {ap50[-1]:.3f} AP {ap[-1]:.3f} at {minutes[-1]:.1f} min")


if __name__ == "__main__":
    main()
