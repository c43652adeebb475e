"""Training one run: the framework-neutral engine (engine/), the input pipeline both backends share (inputs/),
the PyTorch and Keras backends (backends/), and `cnnrepro train` (cli, configure, ablations, ledger)."""
