"""Pretraining a micro model with train.parallel=fsdp, in one process or under torchrun: the
helper behind tests/test_fsdp.py (not a test itself).

    torchrun --nnodes 1 --nproc_per_node 2 --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:PORT \\
        tests/fsdp_worker.py WORK_DIR

Under torchrun it runs the 2-process phases of the test, in order, in one process group:
  two    train WORK/two to step 10, keep a copy of that checkpoint (WORK/two_at_10), go on to 20
  one2   resume WORK/one_to_two (a 1-process checkpoint at step 10) on 2 processes, to step 20
  muon   Muon on FSDP2 row shards of uneven size (5 rows on 2 ranks), tall and wide, against
         Muon on the whole matrices in each process: the largest difference, to WORK/muon.json
The real pretraining pieces are used: pretrain.window_batch_fn, likelihood.window_eval_fn,
next_token_loss_sum, the Trainer, Muon for the hidden matrices.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

GLOBAL_BATCH = 8
SEQ_LEN = 32
VOCAB = 96


def tokens(n: int = 40_000, seed: int = 0) -> np.ndarray:
    """A learnable stream: each token follows from the last by a rule, with some noise."""
    rng = np.random.default_rng(seed)
    out = np.empty(n, dtype=np.uint16)
    out[0] = 1
    noise = rng.random(n) < 0.2
    jumps = rng.integers(0, VOCAB, n)
    for i in range(1, n):
        out[i] = jumps[i] if noise[i] else (int(out[i - 1]) * 7 + 3) % VOCAB
    return out


def model_config(d_model: int = 32):
    from lmforge.config import ModelConfig
    return ModelConfig(vocab_size=VOCAB, seq_len=SEQ_LEN, n_layer=2, n_head=2, d_model=d_model)


def train(out_dir: Path, max_steps: int, d_model: int = 32):
    """Pretrain to max_steps (resuming from out_dir's checkpoint if there is one); returns the Trainer."""
    from lmforge.config import TrainConfig
    from lmforge.checkpoints import save_model
    from lmforge.model import GPT
    from lmforge.train.loop import Trainer
    from lmforge.evals.likelihood import window_eval_fn
    from lmforge.train.pretrain import next_token_loss_sum, window_batch_fn

    torch.manual_seed(0)
    model = GPT(model_config(d_model))
    out_dir = Path(out_dir)
    # a constant rate: a run stopped at 10 and resumed to 20 is the run straight to 20
    cfg = TrainConfig(batch_size=1, grad_accum=2, seq_len=SEQ_LEN, optimizer="muon", schedule="constant",
                      warmup_steps=0, max_steps=max_steps, eval_every=10, eval_batches=1, patience=0,
                      checkpoint_every=10, log_every=1, dtype="fp32", parallel="fsdp", lr=3e-3, matrix_lr=0.02)
    trainer = Trainer(model, cfg, out_dir=out_dir, log_path=out_dir / "log.jsonl", seed=0, device="cpu",
                      save_fn=save_model, stage="pretrain")
    per_rank = GLOBAL_BATCH // cfg.grad_accum // trainer.world_size
    data = tokens()
    split = len(data) * 9 // 10
    batch_fn = window_batch_fn(data[:split], per_rank, cfg.grad_accum, SEQ_LEN, 0, trainer.device)
    windows = GLOBAL_BATCH * cfg.eval_batches
    eval_fn = window_eval_fn(data[split:], windows, per_rank, SEQ_LEN, trainer.device, trainer.rank,
                           trainer.world_size)
    trainer.fit(batch_fn, next_token_loss_sum, eval_fn, resume=True)
    return trainer


def losses(out_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (Path(out_dir) / "log.jsonl").read_text().splitlines())}


def muon_uneven(rank: int, world: int) -> float:
    """Largest |sharded - whole| weight difference after 3 Muon steps on three small layers."""
    from torch.distributed.fsdp import fully_shard

    from lmforge.train.muon import Muon

    def layers():
        torch.manual_seed(0)
        return torch.nn.Sequential(*(torch.nn.Linear(a, b, bias=False) for a, b in [(8, 5), (5, 8), (8, 5)]))
    whole, sharded = layers(), layers()
    fully_shard(sharded)
    opts = [Muon(m.parameters(), lr=0.1, ns_dtype=torch.float32) for m in (whole, sharded)]
    for step in range(3):
        x = torch.randn(2 * world, 8, generator=torch.Generator().manual_seed(step))
        whole(x).pow(2).sum().backward()
        # FSDP averages gradients over ranks: each rank's share of the sum, times world
        (sharded(x[2 * rank:2 * rank + 2]).pow(2).sum() * world).backward()
        for opt in opts:
            opt.step()
            opt.zero_grad()
    return max(float((a.detach() - b.full_tensor().detach()).abs().max()) for a, b in zip(whole.parameters(), sharded.parameters()))


def main(work: Path) -> None:
    import torch.distributed as dist

    from lmforge.device import init_distributed, leave_process_group
    rank, world = init_distributed(torch.device("cpu"))
    assert world == 2, world
    trainer = train(work / "two", 10)
    if rank == 0:
        shutil.copytree(work / "two", work / "two_at_10")
    dist.barrier()
    assert trainer.sharded
    train(work / "two", 20)
    train(work / "one_to_two", 20)
    difference = muon_uneven(rank, world)
    if rank == 0:
        (work / "muon.json").write_text(json.dumps({"max_abs_difference": difference}))
    leave_process_group(0)      # as the CLI leaves: together, then os._exit (lmforge/device.py)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
