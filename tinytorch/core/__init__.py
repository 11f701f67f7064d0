"""The foundation: what modules 1-14 of a full course produce.

tensor (autograd) -> backends (the matmul routing point) -> nn (layers) -> attention ->
transformer (TinyGPT) -> losses -> optim -> data -> train.
"""
