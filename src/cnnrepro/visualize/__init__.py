"""`cnnrepro visualize`: what the convnets learned, in three kinds of pictures (Deep Learning with Python 5.4).

- activations/<layer>.png: every channel of the first layers' outputs for one test image;
- filters/<network>_<layer>.png: the inputs that maximize filters of the convnet and of ImageNet VGG16;
- heatmaps/<variant>_<class>_<id>.png: Grad-CAM or CAM over test images;
- index.json: every figure with its caption and MLflow copy, and everything skipped with the reason.

Settings: params.yaml `visualize` (settings.py); the command is cli.py, the stage stage.py.
"""
