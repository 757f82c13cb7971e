"""`Report`: where the bytes of a `.lnx` file go, as a dataclass with a readable table."""

import dataclasses
from typing import Optional

from lilnetx_tf.text_table import format_table

__all__ = ["SectionReport", "GroupReport", "SECTION_NAMES", "Report"]


@dataclasses.dataclass
class SectionReport:
  """One container section: tag, codec, decompressed size and bytes on disk (header included)."""
  tag: str
  codec: str
  raw_bytes: int
  file_bytes: int


@dataclasses.dataclass
class GroupReport:
  """One parameter group: its coded latents and entropy table, and the model's own estimate."""
  key: str
  slice_size: int
  layers: int
  parameters: int
  coded_bytes: int
  table_bytes: int
  estimated_bytes: Optional[float] = None   # self-information / 8 under the learned density

  @property
  def coded_over_estimate(self) -> Optional[float]:
    if not self.estimated_bytes:
      return None
    return self.coded_bytes / self.estimated_bytes


SECTION_NAMES = {
    "ARCH": "architecture (Keras config)",
    "WGTS": "float weights (groups, biases, BN, plain layers)",
    "GRPS": "group manifest",
    "CDFT": "entropy tables",
    "LATS": "range-coded latents",
}


@dataclasses.dataclass
class Report:
  """What `lnx.compress` wrote (or `lnx.inspect` read).

  total_bytes: file size. parameter_bytes: everything but the architecture section and the file
  header. coded_latent_bytes: the range-coded strings; estimated_latent_bytes: the self-information
  of the same integer latents under the model's densities (`lnx.stats(model)["bytes"]`, what
  training priced). The file's code, fitted to the final latents and their channel and slice
  structure, usually takes less. latent_parameters / parameters: counts of latent weights and of
  every stored tensor element.
  """
  path: str
  total_bytes: int
  header_bytes: int
  sections: list
  groups: list
  parameters: int
  latent_parameters: int
  float16: bool = False
  float_bits: Optional[int] = None
  mantissa_bits: Optional[int] = None
  inference_only: bool = False

  @property
  def coded_latent_bytes(self) -> int:
    return sum(g.coded_bytes for g in self.groups)

  @property
  def estimated_latent_bytes(self) -> Optional[float]:
    if any(g.estimated_bytes is None for g in self.groups):
      return None
    return sum(g.estimated_bytes for g in self.groups)

  @property
  def architecture_bytes(self) -> int:
    return sum(s.file_bytes for s in self.sections if s.tag == "ARCH")

  @property
  def parameter_bytes(self) -> int:
    return self.total_bytes - self.architecture_bytes - self.header_bytes

  def section(self, tag: str) -> Optional[SectionReport]:
    return next((s for s in self.sections if s.tag == tag), None)

  def as_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d.update(coded_latent_bytes=self.coded_latent_bytes,
             estimated_latent_bytes=self.estimated_latent_bytes,
             architecture_bytes=self.architecture_bytes, parameter_bytes=self.parameter_bytes)
    return d

  def __str__(self) -> str:
    lines = [f"{self.path}: {self.total_bytes:,} bytes, {self.parameters:,} parameters "
             f"({self.latent_parameters:,} latent)"
             + (", non-latent floats as float16" if self.float16 else "")
             + (f" ({self.mantissa_bits} mantissa bits)" if self.mantissa_bits else "")
             + (f", non-latent floats as {self.float_bits}-bit integers" if self.float_bits
                else "")
             + (", inference only (no densities, BatchNorm folded)"
                if self.inference_only else "")]
    lines.append("")
    rows = [("section", "codec", "raw bytes", "file bytes", "share", "")]
    rows.append(("header", "-", str(self.header_bytes), str(self.header_bytes),
                 _pct(self.header_bytes, self.total_bytes), "magic, version, file id"))
    for s in self.sections:
      rows.append((s.tag, s.codec, f"{s.raw_bytes:,}", f"{s.file_bytes:,}",
                   _pct(s.file_bytes, self.total_bytes), SECTION_NAMES.get(s.tag, "")))
    lines += format_table(rows, align="lrrrrl")
    lines.append("")
    rows = [("group", "slice", "layers", "latents", "coded B", "table B", "estimated B",
             "coded/est", "bits/latent")]
    for g in self.groups:
      ratio = g.coded_over_estimate
      rows.append((g.key, str(g.slice_size), str(g.layers), f"{g.parameters:,}",
                   f"{g.coded_bytes:,}", f"{g.table_bytes:,}",
                   "-" if g.estimated_bytes is None else f"{g.estimated_bytes:,.1f}",
                   "-" if ratio is None else f"{ratio:.4f}",
                   f"{8 * g.coded_bytes / max(g.parameters, 1):.3f}"))
    estimate = self.estimated_latent_bytes
    rows.append(("total", "", str(sum(g.layers for g in self.groups)),
                 f"{self.latent_parameters:,}", f"{self.coded_latent_bytes:,}",
                 f"{sum(g.table_bytes for g in self.groups):,}",
                 "-" if estimate is None else f"{estimate:,.1f}",
                 "-" if not estimate else f"{self.coded_latent_bytes / estimate:.4f}",
                 f"{8 * self.coded_latent_bytes / max(self.latent_parameters, 1):.3f}"))
    lines += format_table(rows)
    lines.append("")
    lines.append(f"parameter bytes (all but architecture and header): {self.parameter_bytes:,} "
                 f"of {self.total_bytes:,} ({_pct(self.parameter_bytes, self.total_bytes)})")
    lines.append(f"architecture bytes: {self.architecture_bytes:,}")
    return "\n".join(lines)


def _pct(part: float, whole: float) -> str:
  return f"{100.0 * part / whole:.1f}%" if whole else "-"
