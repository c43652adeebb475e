"""cnnrepro: do the published convnet numbers hold, and why or why not."""

import os

__version__ = "0.1.0"

# MLflow's telemetry (on by default outside CI) fetches its config in a thread at `import mlflow`;
# where that fails (no internet, as on cluster nodes) the thread deletes _MLFLOW_TELEMETRY_SESSION_ID
# from os.environ while the main thread may be iterating os.environ (requests does, on every call to a
# tracking server): a training job died with KeyError '_MLFLOW_TELEMETRY_SESSION_ID' under SLURM.
# Set before any cnnrepro module imports mlflow; a value the user set is kept.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# PyTorch's CPU ops run on OpenMP (libgomp) workers, which by default spin for a while after each
# parallel region. On a CPU shared with other jobs a spinning worker holds a core the thread with the
# work needs, and every small op waits for a preempted worker: measured on a 2-core machine under
# load (issue 21), mnist_convnet training steps took 250-690 ms spinning and 60-80 ms with PASSIVE
# workers (sleep at once). libgomp reads this when it loads, at the first `import torch`: set here,
# before any cnnrepro module imports torch; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# PyTorch's CPU allocator hands every freed buffer back to the kernel (glibc maps allocations over
# 32 MB afresh each time), so each training step pays page faults on its largest activations and
# gradients: a fresh 56 MB buffer (baseline's first conv output at batch 20) took 28 ms to zero where
# the same buffer reused took 4 ms, on a 2-core AMD EPYC. With THP_MEM_ALLOC_ENABLE=1, PyTorch aligns
# allocations of 2 MB and more to 2 MB and asks for transparent huge pages (madvise), 512 times fewer
# faults: 8 ms there, and a process of 12 baseline training steps 8% faster (issue 21). Memory placement only:
# no result changes. c10 reads it once, at its first CPU allocation: set here, before any cnnrepro
# module imports torch; a value the user set is kept (0 turns it off).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
