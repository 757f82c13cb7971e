"""The GRPS, CDFT and LATS sections: the parameter groups and their range-coded latents.

GRPS is JSON {"densities": whether WGTS holds the groups' densities, "groups": one entry per
group, [key, slice size, member layers, latents, table bytes, string bytes]}; CDFT and LATS
concatenate the groups' entropy tables and range-coded strings (`latent_code`). The members
and their shapes come from the architecture, in the order of `model.layers`.
"""

import dataclasses
import json

import numpy as np

from lilnetx_tf import errors
from lilnetx_tf.coding import container
from lilnetx_tf.coding import entropy
from lilnetx_tf.coding import latent_code
from lilnetx_tf.coding.report import GroupReport
from lilnetx_tf.layers import group as group_lib

__all__ = ["Encoded", "groups_of", "encode", "parse", "decode"]

_FIELDS = ("key", "slice_size", "layers", "latents", "table_bytes", "string_bytes")


def groups_of(layers: list) -> list:
  """Distinct parameter groups in order of their first member, each with its
  (index among `layers`, layer) members."""
  index = {id(layer): i for i, layer in enumerate(layers)}
  return [(group, [(index[id(layer)], layer) for layer in members])
          for group, members in group_lib.members_by_group(layers)]


@dataclasses.dataclass
class Encoded:
  """The three sections' payloads and a report per group."""
  grps: bytes
  cdft: bytes
  lats: bytes
  reports: list


def _latents(members: list, stored: dict) -> list:
  """The integer latents of a group's members (`stored` ones first, e.g. zeroed), checked."""
  latents = []
  for _, layer in members:
    q = stored.get(id(layer.latent_variable))
    q = layer.integer_latent.numpy() if q is None else q
    entropy.check_integers(q, layer.name)
    latents.append(q)
  return latents


def encode(layers: list, stored: dict, densities: bool, precision: int,
           estimate: bool) -> Encoded:
  """Codes the latents of the groups of `layers` with `precision`-bit tables; `estimate`
  adds each group's estimated self-information to its report."""
  manifest, tables, strings, reports = [], [], [], []
  for group, members in groups_of(layers):
    latents = _latents(members, stored)
    table_bytes, string = latent_code.encode_group(latents, group.slice_size, precision)
    tables.append(table_bytes)
    strings.append(string)
    key, count = members[0][1].group_key, sum(q.size for q in latents)
    manifest.append([key, group.slice_size, len(members), count, len(table_bytes),
                     len(string)])
    estimated = entropy.estimated_bits(group, latents) / 8 if estimate else None
    reports.append(GroupReport(key, group.slice_size, len(members), count, len(string),
                               len(table_bytes), estimated))
  grps = json.dumps({"densities": densities, "groups": manifest},
                    separators=(",", ":")).encode()
  return Encoded(grps, b"".join(tables), b"".join(strings), reports)


def parse(section: container.StoredSection) -> tuple[bool, list]:
  """(whether WGTS holds the densities, the groups' entries as dicts of `_FIELDS`) of a GRPS
  section."""
  if section.raw_bytes > container.MAX_JSON_BYTES:
    raise errors.ModelFileError(
        f"The GRPS section has more than {container.MAX_JSON_BYTES:,} bytes.")
  doc = container.parse_json(section.data, "GRPS")
  try:
    densities, groups = doc["densities"], doc["groups"]
    ok = isinstance(densities, bool) and all(
        isinstance(g, list) and len(g) == len(_FIELDS) and isinstance(g[0], str)
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in g[1:])
        for g in groups)
    if not ok:
      raise TypeError
  except (KeyError, TypeError):
    raise errors.ModelFileError("The GRPS section is malformed.") from None
  return densities, [dict(zip(_FIELDS, g)) for g in groups]


def _check_entry(entry: dict, group, members: list) -> None:
  latents = sum(l.num_slices for _, l in members) * group.slice_size
  if (entry["key"] != members[0][1].group_key or entry["slice_size"] != group.slice_size
      or entry["layers"] != len(members) or entry["latents"] != latents):
    raise errors.ModelFileError(
        f"Group {entry['key']!r} in the file does not match the architecture's "
        f"{members[0][1].group_key!r} (a section from another model?).")


def decode(layers: list, manifest: list, tables: bytes, strings: bytes,
           decoder_class: type) -> list:
  """Decodes each group's latents into its members' latent variables (q · latent step);
  returns (entry, group, integer latents) per group."""
  groups = groups_of(layers)
  if len(manifest) != len(groups):
    raise errors.ModelFileError(
        f"The file has {len(manifest)} parameter groups, the architecture {len(groups)}.")
  if sum(g["table_bytes"] for g in manifest) != len(tables) or \
     sum(g["string_bytes"] for g in manifest) != len(strings):
    raise errors.ModelFileError("The CDFT/LATS sections do not match the group manifest.")
  table_pos = string_pos = 0
  decoded = []
  for entry, (group, members) in zip(manifest, groups):
    _check_entry(entry, group, members)
    values = latent_code.decode_group(tables[table_pos:table_pos + entry["table_bytes"]],
                                      strings[string_pos:string_pos + entry["string_bytes"]],
                                      [tuple(l.latent_variable.shape) for _, l in members],
                                      f"the latents of group {entry['key']!r}", decoder_class)
    table_pos += entry["table_bytes"]
    string_pos += entry["string_bytes"]
    step = np.float32(group.latent_step.numpy())
    for (_, layer), q in zip(members, values):
      layer.latent_variable.assign(q * step)
    decoded.append((entry, group, values))
  return decoded
