"""The options that score the episodes of a fold protocol as a peer scored them (``eval --episodes``, ``folds``)."""

from __future__ import annotations

import argparse

from splitmatch.commands.arguments import positive_int


def add_peer_scoring_options(parser: argparse.ArgumentParser, episode_file: bool) -> None:
    """``--episode-size`` (HSNet's 400 x 400) and, with ``episode_file``, ``--episode-file`` (a peer's list)."""
    parser.add_argument("--episode-size", type=positive_int, help="score the episodes at N x N, as HSNet's test.py "
                        "at 400 (default: at the label's size, HSNet's --use_original_imgsize)")  # fmt: skip
    if episode_file:
        parser.add_argument("--episode-file", help="with --episodes: score a peer's list as it stands instead of the "
                            "stored one: HSNet's PASCAL-5i pairs (fold<i>.txt), its COCO-20i per-class lists "
                            "(fold<i>.pkl, drawn as HSNet draws) or a <stem><TAB><class> list "
                            "(docs/benchmarks.md)")  # fmt: skip
