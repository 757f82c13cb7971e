"""Rate–accuracy curve: the MNIST example at several λ_I, plotted as test error vs. file size.

    TFDS_DATA_DIR=... PYTHONPATH=. .venv/bin/python benchmarks/rate_accuracy.py \
        --rate_weights=0.03,0.1,0.3,1 --epochs=10 --output_dir=runs/rate_accuracy

Each λ_I runs `examples/mnist.py` in its own process (output in OUTPUT_DIR/rate_<λ>/, skipped
when its summary.json exists, so an interrupted sweep resumes), then the decompressed models'
test errors and sizes are printed as a table and plotted into OUTPUT_DIR/curve.png: parameter
bytes (everything in the file but the architecture: latents, CDF tables, decoders, biases,
BatchNorm) and coded latents alone (what the reference implementation counts), with the EPR
anchor of the model as a reference point. Extra flags after `--` go to the example.
"""

import argparse
import json
import os
import subprocess
import sys

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "mnist.py")
# EPR (Oktay et al. 2020), Table 1: parameter bytes and test error.
EPR_ANCHORS = {"lenet5": (2.84e3, 1.0), "lenet300_100": (8.56e3, 1.9)}


def run(rate_weight: float, args, extra: list) -> dict:
  output_dir = os.path.join(args.output_dir, f"rate_{rate_weight:g}")
  summary_path = os.path.join(output_dir, "summary.json")
  if not os.path.exists(summary_path):
    command = [sys.executable, EXAMPLE, f"--model={args.model}", f"--epochs={args.epochs}",
               f"--rate_weight={rate_weight}", f"--output_dir={output_dir}", *extra]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)
  with open(summary_path) as f:
    return json.load(f)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="lenet5", choices=sorted(EPR_ANCHORS))
  parser.add_argument("--rate_weights", default="0.03,0.1,0.3,1")
  parser.add_argument("--epochs", type=int, default=10)
  parser.add_argument("--output_dir", default="runs/rate_accuracy")
  args, extra = parser.parse_known_args()
  extra = [a for a in extra if a != "--"]
  results = [run(float(w), args, extra) for w in args.rate_weights.split(",")]

  results.sort(key=lambda r: r["rate_weight"])
  print("\n| λ_I | test error | coded latent bytes | parameter bytes | file bytes | "
        "slice sparsity | in / out channel sparsity | MAC ratio | TFLite slim speedup |")
  print("|---|---|---|---|---|---|---|---|---|")
  for r in results:
    speedup = r["latency_ms_dense"] / r["latency_ms_slim"] if "latency_ms_slim" in r else None
    print(f"| {r['rate_weight']:g} | {100 * (1 - r['test_accuracy']):.2f} % | "
          f"{r['coded_latent_bytes']:,} | {r['parameter_bytes']:,} | {r['file_bytes']:,} | "
          f"{r['slice_sparsity']:.3f} | {r['in_channel_sparsity']:.2f} / "
          f"{r['out_channel_sparsity']:.2f} | {r['macs_ratio']:.2f}× | "
          + (f"{speedup:.2f}× |" if speedup else "– |"))

  fig, ax = plt.subplots(figsize=(6, 4.2))
  errors = [100 * (1 - r["test_accuracy"]) for r in results]
  for key, label, style in (("parameter_bytes", "parameter bytes (whole file but architecture)",
                             "o-"),
                            ("coded_latent_bytes", "coded latents only", "^--")):
    ax.plot([r[key] / 1e3 for r in results], errors, style, label=label)
  for r, error in zip(results, errors):
    ax.annotate(f"λ_I={r['rate_weight']:g}", (r["parameter_bytes"] / 1e3, error),
                textcoords="offset points", xytext=(4, 4), fontsize=8)
  anchor_bytes, anchor_error = EPR_ANCHORS[args.model]
  ax.plot([anchor_bytes / 1e3], [anchor_error], "s", color="tab:red", label="EPR (2020)")
  ax.set_xscale("log")
  ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
  ax.xaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
  ax.set_xlabel("KB")
  ax.set_ylabel("test error (%)")
  ax.set_title(f"MNIST {args.model}, {args.epochs} epochs")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(loc="lower left", fontsize=8)
  fig.tight_layout()
  path = os.path.join(args.output_dir, "curve.png")
  fig.savefig(path, dpi=120)
  print(f"\nplot written to {path}")


if __name__ == "__main__":
  main()
