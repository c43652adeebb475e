"""cnnrepro: do the published convnet numbers hold, and why or why not."""

__version__ = "0.1.0"
