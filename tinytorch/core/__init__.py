"""The foundation: what modules 1-14 of a full course produce.

tensor (autograd) -> backends (the matmul routing point) -> nn (layers) -> attention ->
transformer (TinyGPT) -> losses -> optim -> data -> train. `functional` (PyTorch's
`nn.functional` semantics) and `serialization` (save/load without pickle, PyTorch state-dict
conversion) sit on nn/losses; `tinytorch.nn`, `tinytorch.optim`, `tinytorch.utils` re-export
them under PyTorch's names.
"""
