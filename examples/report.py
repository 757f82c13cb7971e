"""The examples' closing table and OUTPUT_DIR/summary.json: accuracy of the trained and of the
decompressed model, file and TFLite sizes, sparsity, MACs and latency; for a plain (dense)
baseline, what a user would otherwise ship (Keras weights, float32 / float16 / int8 TFLite)."""

import gzip
import json
import os

import lilnetx_tf as lnx  # before TF: picks Keras 2, filters TF 2.21's start-up logs
from lilnetx_tf.export import slimming
from lilnetx_tf.export import tflite as tflite_lib

import numpy as np
import tensorflow as tf

from common import accuracy

_STATS = ("slice_sparsity", "in_channel_sparsity", "out_channel_sparsity", "macs_dense",
          "macs_effective", "macs_ratio", "parameters")


def _print_rows(rows: dict) -> None:
  width = max(len(k) for k in rows)
  print("\n" + "\n".join(f"{k:<{width}}  {v}" for k, v in rows.items()), flush=True)


def _write_summary(output_dir: str, summary: dict) -> None:
  path = os.path.join(output_dir, "summary.json")
  with open(path + ".tmp", "w") as f:
    json.dump(summary, f, indent=1, default=str)
  os.replace(path + ".tmp", path)
  print(f"\nsummary written to {path}")


def _gzipped(content: bytes) -> int:
  return len(gzip.compress(content, compresslevel=9, mtime=0))


def tflite_accuracy(content: bytes, model: tf.keras.Model, dataset: tf.data.Dataset) -> float:
  """Top-1 accuracy of a .tflite model (run by the interpreter, batch 1) on `dataset`."""
  correct = total = 0
  for x, y in dataset:
    logits = tflite_lib.run(content, model, [x.numpy()])[0]
    correct += int(np.sum(np.argmax(logits, -1) == y.numpy()))
    total += len(y)
  return correct / total


def shipped_sizes(model: tf.keras.Model, test: tf.data.Dataset, output_dir: str) -> dict:
  """File sizes (raw and gzipped) of the Keras float32 weights and of float32 / float16 / int8
  TFLite of a plain model, and each TFLite accuracy."""
  representative = np.concatenate([x.numpy() for x, _ in test.take(1)])[:128]
  # Legacy HDF5 weights: the model variables only (".weights.h5" would add the optimizer's).
  weights_path = os.path.join(output_dir, "baseline_weights.h5")
  model.save_weights(weights_path)
  with open(weights_path, "rb") as f:
    content = f.read()
  rows = {"keras float32 weights": dict(bytes=len(content), gzip_bytes=_gzipped(content))}
  for quantization in tflite_lib.QUANTIZATIONS:
    content = tflite_lib.convert(model, quantization, representative_data=representative)
    rows[f"tflite {quantization or 'float32'}"] = dict(
        bytes=len(content), gzip_bytes=_gzipped(content),
        accuracy=tflite_accuracy(content, model, test))
  return rows


def baseline(model: tf.keras.Model, test: tf.data.Dataset, output_dir: str,
             config: dict) -> dict:
  """Evaluates a plain (dense) baseline and measures what shipping it would cost."""
  os.makedirs(output_dir, exist_ok=True)
  summary = dict(config, test_accuracy=accuracy(model, test),
                 parameters=int(model.count_params()),
                 shipped=shipped_sizes(model, test, output_dir))
  rows = dict(config)
  rows["accuracy (Keras float32)"] = f"{summary['test_accuracy']:.4f}"
  for name, figures in summary["shipped"].items():
    accuracy_text = f", accuracy {figures['accuracy']:.4f}" if "accuracy" in figures else ""
    rows[name] = f"{figures['bytes']:,} B (gzip {figures['gzip_bytes']:,} B){accuracy_text}"
  _print_rows(rows)
  _write_summary(output_dir, summary)
  return summary


def _file_rows(summary: dict) -> dict:
  return {
      "accuracy (trained model)": f"{summary['trained_accuracy']:.4f}",
      "accuracy (decompressed file)": f"{summary['test_accuracy']:.4f}",
      "compress / decompress time": (f"{summary['compress_seconds']:.2f} s / "
                                     f"{summary['decompress_seconds']:.2f} s"),
      "file size (total / parameter bytes)": (f"{summary['file_bytes']:,} B / "
                                              f"{summary['parameter_bytes']:,} B"),
      "coded / estimated latent bytes": (f"{summary['coded_latent_bytes']:,} B / "
                                         f"{summary['estimated_latent_bytes']:,.0f} B"),
      "slice sparsity": f"{summary['slice_sparsity']:.3f}",
      "in / out channel sparsity": (f"{summary['in_channel_sparsity']:.3f} / "
                                    f"{summary['out_channel_sparsity']:.3f}"),
      "MACs dense → effective": (f"{summary['macs_dense']:,} → {summary['macs_effective']:,} "
                                 f"({summary['macs_ratio']:.2f}×)")}


def _export_rows(exported, model: tf.keras.Model, summary: dict, latency_runs: int) -> dict:
  """Adds the figures of `model`'s slim export and the dense vs. slim TFLite latency to
  `summary`."""
  with open(os.path.join(exported.directory, "model.tflite"), "rb") as f:
    slim_content = f.read()
  dense = slimming.slim(model, check=False, remove_channels=False)
  latency = tflite_lib.median_latencies(
      {"dense": tflite_lib.convert(dense), "slim": slim_content}, runs=latency_runs)
  summary.update(tflite_bytes_dense=exported.tflite_bytes_before,
                 tflite_bytes_slim=exported.tflite_bytes_after,
                 slim_parameters=exported.parameters_after, slim_macs=exported.macs_after,
                 tflite_max_difference=exported.tflite_max_difference,
                 latency_ms_dense=latency["dense"], latency_ms_slim=latency["slim"])
  return {
      "TFLite float32 dense → slim": (f"{exported.tflite_bytes_before:,} B → "
                                      f"{exported.tflite_bytes_after:,} B"),
      "slim parameters / MACs": (f"{exported.parameters_after:,} / {exported.macs_after:,} "
                                 f"(dense {exported.parameters_before:,} / "
                                 f"{exported.macs_before:,})"),
      "TFLite latency dense → slim": (
          f"{latency['dense']:.3f} ms → {latency['slim']:.3f} ms "
          f"({latency['dense'] / latency['slim']:.2f}×; batch 1, 1 thread, median)"),
      "max |TFLite − Keras|": f"{exported.tflite_max_difference:.2e}"}


def lilnetx(trained: tf.keras.Model, restored: tf.keras.Model, file: lnx.coding.Report,
            exported, test: tf.data.Dataset, output_dir: str, config: dict, seconds: tuple,
            latency_runs: int = 200) -> dict:
  """Prints the table of a LilNetX run and writes summary.json: `trained` and `restored`
  (decompressed from the file of `lnx.compress` report `file`), `exported` (`lnx.export`'s
  report, or None), `seconds` (to compress, to decompress)."""
  figures = lnx.stats(trained)
  summary = dict(config, trained_accuracy=accuracy(trained, test),
                 test_accuracy=accuracy(restored, test), file_bytes=file.total_bytes,
                 parameter_bytes=file.parameter_bytes, estimated_latent_bytes=figures["bytes"],
                 coded_latent_bytes=file.coded_latent_bytes, compress_seconds=seconds[0],
                 decompress_seconds=seconds[1], **{k: figures[k] for k in _STATS})
  rows = dict(config, **_file_rows(summary))
  if exported is not None:
    rows.update(_export_rows(exported, restored, summary, latency_runs))
  _print_rows(rows)
  if exported is not None:
    print("\n" + exported.table())
  _write_summary(output_dir, summary)
  return summary
