"""The input pipeline both backends share (augmentation and scaling, written in PyTorch; the Keras runs feed
its arrays), kept out of the framework-neutral engine because it computes with torch tensors."""
