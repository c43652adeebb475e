"""`cnnrepro bench`: how fast the training engine is, measured against the device's physical limit.

Modules: flops (arithmetic per step, from the layers and by torch's counter), peaks (GPU datasheet
peaks, the CPU's measured matmul rate), measure (timed steps of the fast and the naive path), naive
(the plain DataLoader port it is compared with), interleave (framework-neutral alternating rounds),
versus (PyTorch against Keras on the CPU), reproduction (every variant end to end, timed), table
(printing), cli (the command).
"""
