"""Pixel statistics the pretrained backbones expect, shared by the models' ``InputSpec`` and the data
transforms (this module imports nothing, so both can use it).

ImageNet models: RGB in [0, 1], then ``(x - IMAGENET_MEAN) / IMAGENET_STD``. BN-Inception (the Caffe port
used by TSN/TSM): BGR in [0, 255], minus ``BNINCEPTION_MEAN``, std 1. EfficientNet-Lite (TensorFlow reference):
RGB in [0, 255], ``(x - 127) / 128``, i.e. about [-1, 1].
"""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BNINCEPTION_MEAN = (104.0, 117.0, 128.0)  # BGR order, on 0-255 input
BNINCEPTION_STD = (1.0, 1.0, 1.0)
EFFICIENTNET_LITE_MEAN = (127.0, 127.0, 127.0)  # RGB, on 0-255 input
EFFICIENTNET_LITE_STD = (128.0, 128.0, 128.0)
