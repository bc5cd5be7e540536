"""data.num_workers "auto": loader workers from the cores this process may use and its batch."""

from __future__ import annotations

import os

import pytest

from splitmatch.data.loader_workers import auto_num_workers, available_cores, resolve_num_workers


@pytest.mark.parametrize(
    "batch, cores, processes, expected",
    [(16, 16, 1, 15), (16, 64, 1, 16), (4, 16, 4, 3), (16, 2, 1, 1), (8, 1, 1, 0), (16, 8, 8, 0), (0, 16, 1, 0)],
)
def test_workers_follow_the_cores_left_and_never_exceed_the_batch(batch, cores, processes, expected):
    assert auto_num_workers(batch, cores=cores, processes=processes) == expected


def test_auto_reads_the_affinity_and_the_local_processes(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7}, raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert available_cores() == 8
    assert resolve_num_workers("auto", 16) == 3  # 8 cores for 2 processes, one of the 4 kept for training
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert resolve_num_workers("auto", 4) == 4


def test_counts_pass_through_and_other_values_are_named():
    assert resolve_num_workers(0, 16) == 0 and resolve_num_workers(6, 16) == 6
    for bad in (-1, "many", 2.5, True):
        with pytest.raises(ValueError, match="data.num_workers must be a count >= 0 or 'auto'"):
            resolve_num_workers(bad, 16)
