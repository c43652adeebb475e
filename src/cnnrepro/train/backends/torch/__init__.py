"""The PyTorch backend (`runner.BACKEND`, a cnnrepro.train.engine.backend.Backend): the model on the device, the
training loop with the sources' Keras semantics, and the sources' optimizers."""
