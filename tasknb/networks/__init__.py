"""Networks, one module per family.

``stacks``  K two-layer networks held as stacked tensors (binary and soft-max heads), trained at once
``cnn``     the small convolutional network of the prediction-space chapters
``resnet``  a small ResNet with ResNet-18's module names (conv1, layer1-layer4, fc), GroupNorm
"""
