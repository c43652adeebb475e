"""The framework-neutral engine: everything about a run that does not depend on PyTorch or Keras.

`lifecycle` (can it run, splits, provenance, outputs), `inputs` (augmentation, Keras iterators, the
epoch line), `data` and `cache` (decoded images and idx arrays), `augment`, `checkpoint`,
`run_config` (the resolved run config), `optimizers` (the sources' constants), and `backend`, the
protocol the PyTorch (cnnrepro.train.backends.torch) and Keras (cnnrepro.train.backends.keras) backends implement.
"""
