"""Using a trained run: `cnnrepro evaluate` and `cnnrepro predict`, through the run's own backend."""
