"""DDP on CPU: two processes, gloo, the same code path torchrun uses (env://)."""

from __future__ import annotations


import pytest

import torch  # the train extra; `make test` installs it

from dicom_node.ports import free_port as _free_port
from training.data import EpochSampler



def _worker(rank: int, world: int, port: int, overrides: list[str], out: str) -> None:
    import os

    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    from training.config import load_config
    from training.loop import train

    result = train(load_config(None, overrides))
    torch.save({"state": result.state_dict, "losses": [h["loss"] for h in result.history]},
               f"{out}/rank{rank}.pt")


def test_two_cpu_processes_end_with_identical_weights(tiny_dataset, tmp_path):
    from tests.training._training_helpers import tiny_overrides

    overrides = tiny_overrides(tiny_dataset.root, tmp_path / "run", **{"train.epochs": 1, "train.batch_size": 1})
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), overrides, str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["state"].keys() == r1["state"].keys()
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])
    assert r0["losses"] == r1["losses"]  # epoch loss is all-reduced
    assert (tmp_path / "run" / "last.pt").exists()  # written by rank 0 only


def test_epoch_sampler_splits_windows_between_ranks():
    shares = []
    for rank in range(3):
        s = EpochSampler(10, rank, 3)
        s.set_epoch(4)
        shares.append(list(s))
    assert all(len(x) == 3 for x in shares)  # equal length on every rank
    flat = [i for x in shares for (_, i) in x]
    assert len(set(flat)) == 9 and all(e == 4 for x in shares for (e, _) in x)
