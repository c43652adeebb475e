"""cnnrepro: do the published convnet numbers hold, and why or why not."""

import os

__version__ = "0.1.0"

# MLflow's telemetry (on by default outside CI) fetches its config in a thread at `import mlflow`;
# where that fails (no internet, as on cluster nodes) the thread deletes _MLFLOW_TELEMETRY_SESSION_ID
# from os.environ while the main thread may be iterating os.environ (requests does, on every call to a
# tracking server): a training job died with KeyError '_MLFLOW_TELEMETRY_SESSION_ID' under SLURM.
# Set before any cnnrepro module imports mlflow; a value the user set is kept.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
