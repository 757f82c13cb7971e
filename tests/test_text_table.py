"""lilnetx_tf.text_table: the aligned text tables of the reports."""

from lilnetx_tf.text_table import format_table


def test_alignment_rule_and_indent():
  rows = [("name", "bytes"), ("conv3x3", "1,024"), ("dense", "7")]
  assert format_table(rows) == ["name     bytes",
                                "-------  -----",
                                "conv3x3  1,024",
                                "dense        7"]
  assert format_table(rows, align="rl", rule=False, indent="> ") == [
      ">    name  bytes", "> conv3x3  1,024", ">   dense  7"]
