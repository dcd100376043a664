"""Networks, one module per family.

``stacks``  K two-layer networks held as stacked tensors (binary and soft-max heads), trained at once
``cnn``     the small convolutional network of the prediction-space chapters
"""
