"""`rnnlm preprocess` as text: the vocabulary, then tokens and OOV rate per split (meta.json)."""

from __future__ import annotations

from rnnlm_cli.data.corpus import SPLITS
from rnnlm_cli.render.report import table


def summary_table(meta: dict, folder: str) -> str:
    """A short table of a preprocessing result: vocabulary, tokens and OOV rate per split."""
    rows = []
    for split in SPLITS:
        rate = meta["oov_rate"][split]
        rows.append([split, f"{meta['tokens'][split]:,}", "-" if rate is None else f"{rate:.2%}"])
    return "\n".join([f"vocabulary  {meta['vocab_size']:,} ({meta['level']} level, {meta['dtype']})",
                      table(["split", "tokens", "OOV"], rows, align="lrr", widths=[8, 12, 9], sep=""),
                      f"output      {folder}"])
