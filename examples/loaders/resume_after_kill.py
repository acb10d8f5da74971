"""Resume after a crash: a training process killed with SIGKILL mid-epoch,
restarted from the last state it saved, trains every row of the epoch
exactly once in all.

The trainer runs in a child process: after each step it writes the rows it
trained and, with the model's checkpoint, the loader's `state_dict()`
(atomically: written, then renamed). The parent kills it without warning
partway through the epoch, starts it again, and the new process loads the
state and carries on. The rows trained before the kill (up to the last
checkpoint) and after it are then one epoch: none lost, none repeated.

    python examples/loaders/resume_after_kill.py
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

TRAINER = r"""
import json, os, sys, time
import numpy as np, pyarrow as pa, torch
import arrow_dlpack.torch as adt

workdir = sys.argv[1]
state_file = os.path.join(workdir, "state.json")
rows = 5_000
table = pa.table({"x": np.arange(rows, dtype=np.float32), "y": (np.arange(rows) % 7).astype(np.int64)})
loader = adt.Loader(table, 64, shuffle=True, seed=11, row_ids=True)
model = torch.nn.Linear(1, 7)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
if os.path.exists(state_file):
    saved = json.load(open(state_file))
    loader.load_state_dict(saved["loader"])
    model.load_state_dict({k: torch.tensor(v) for k, v in saved["model"].items()})
    print("resumed at step", saved["loader"]["step"], flush=True)
for batch in loader:
    loss = torch.nn.functional.cross_entropy(model(batch["x"][:, None]), batch["y"])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    # The checkpoint: the rows this step trained, the model, the loader.
    trained = os.path.join(workdir, f"rows-{loader.state_dict()['step']:05d}.json")
    json.dump(batch["_row"].tolist(), open(trained, "w"))
    state = {"loader": loader.state_dict(), "model": {k: v.tolist() for k, v in model.state_dict().items()}}
    json.dump(state, open(state_file + ".tmp", "w"))
    os.replace(state_file + ".tmp", state_file)
    time.sleep(0.01)  # the rest of a training step
print("epoch done", flush=True)
"""


def main():
    with tempfile.TemporaryDirectory() as workdir:
        trainer = [sys.executable, "-c", TRAINER, workdir]
        first = subprocess.Popen(trainer, stdout=subprocess.PIPE, text=True)
        # Partway through the epoch's 79 steps, without warning.
        while len([f for f in os.listdir(workdir) if f.startswith("rows-")]) < 30:
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert first.returncode == -signal.SIGKILL
        saved = json.load(open(os.path.join(workdir, "state.json")))["loader"]
        # Steps trained after the last checkpoint are trained again: drop
        # their row files, as a checkpoint restore drops their updates.
        for f in os.listdir(workdir):
            if f.startswith("rows-") and int(f[5:10]) > saved["step"]:
                os.remove(os.path.join(workdir, f))
        second = subprocess.run(trainer, capture_output=True, text=True, check=True)
        assert f"resumed at step {saved['step']}" in second.stdout and "epoch done" in second.stdout
        rows = []
        for f in sorted(os.listdir(workdir)):
            if f.startswith("rows-"):
                rows += json.load(open(os.path.join(workdir, f)))
        assert sorted(rows) == list(range(5_000)), "every row once: none lost, none repeated"
        print(f"resume_after_kill: killed after step {saved['step']}, resumed, {len(rows)} rows trained once each")


if __name__ == "__main__":
    main()
