"""Seconds per fine-tuning step of SmolLM2-135M on this CPU, LoRA or full (a script, not a test).

Runs :func:`elk_lens.train.fine_tune` for ``--steps`` steps on batch 16 of 21-token statements (256 of them,
such as "The old river near the garden was built 3 years before the river in the north of the country."),
saving one checkpoint at the end, and times its ``on_step`` calls. The first step (which pays for the set-up)
and the last (which saves the checkpoint) are reported apart, and the median is taken over the steps
between them. ``docs/methods/lora.md §5`` gives the numbers.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lora_bench.py [--mode lora|full] [--steps 7] [--threads 1]
"""

import argparse
import os
import shutil
import tempfile
import time

import numpy as np
import torch

from elk_lens.data.statements import StatementSet
from elk_lens.lora import LoraConfig
from elk_lens.models import load_model
from elk_lens.train import FineTuneConfig, fine_tune

SPEC = "zoo:smollm2-135m"
NOUNS = ("river", "mountain", "teacher", "village", "doctor", "garden", "engine", "library")


def statements() -> StatementSet:
    texts = [
        f"The old {a} near the {b} was built {n} years before the {c} in the north of the country."
        for a in NOUNS
        for b in NOUNS
        for c in NOUNS[:2]
        for n in (3, 7)
    ]
    return StatementSet(texts, torch.tensor([i % 2 == 0 for i in range(len(texts))]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("lora", "full"), default="lora")
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(SPEC)
    data = statements()
    lengths = model.to_tokens(data.texts[:64], padding_side="right").ne(model.tokenizer.pad_token_id).sum(1)
    print(f"{args.mode}: {args.threads} thread(s), load average {os.getloadavg()[0]:.1f}, ", end="")
    print(f"{float(lengths.float().mean()):.1f} tokens per statement (with BOS)")
    ticks: list[float] = []
    config = FineTuneConfig(
        steps=args.steps, lr=1e-4, warmup=1, batch_size=16, answers=(" True", " False"), checkpoints=(args.steps,)
    )
    out = tempfile.mkdtemp(prefix="lora_bench_")
    started = time.perf_counter()
    try:
        fine_tune(
            model,
            data,
            data.truth,
            out,
            base_spec=SPEC,
            config=config,
            lora=LoraConfig() if args.mode == "lora" else None,
            progress=False,
            on_step=lambda step, loss: ticks.append(time.perf_counter()),
        )
    finally:
        shutil.rmtree(out)
    steps = np.diff(ticks[:-1])
    print(
        f"seconds/step: median {np.median(steps):.2f} (range {steps.min():.2f}-{steps.max():.2f}, {len(steps)} steps); "
        f"first step {ticks[0] - started:.2f} s with the set-up; last step with the checkpoint "
        f"{ticks[-1] - ticks[-2]:.2f} s; load average now {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
