"""Size: the baseline MLP, 80% of its weights pruned (module 18), stored in CSR with fp16 values.

After training, `optimize()` prunes 80% of all Linear weights by global magnitude
(tinytorch.compression.MagnitudePruner), fine-tunes for a few epochs with the masks held, and
makes the zeros permanent. `state()` stores each weight matrix as CSR (float16 values, uint8
column indices, row pointers in the smallest unsigned type): only the kept weights cost bytes.
`load_state()` rebuilds dense float32 matrices, so inference runs the fast dense path.
"""

import numpy as np

from tinytorch.competition import CompetitionSubmission
from tinytorch.compression import CSRMatrix, MagnitudePruner
from tinytorch.core.data import DataLoader, TensorDataset
from tinytorch.core.losses import cross_entropy
from tinytorch.core.nn import Linear
from tinytorch.core.tensor import Tensor


class Pruned(CompetitionSubmission):
    team = "pruned"
    category = "size"
    tags = ("pruning", "magnitude", "csr", "fp16")
    description = (
        "Baseline MLP, 80% global magnitude pruning with 3 epochs of masked fine-tuning, "
        "weights stored as CSR with float16 values."
    )
    stop_accuracy = None  # 20 full epochs, like the baseline
    max_epochs = 20
    sparsity = 0.8
    fine_tune_epochs = 3

    def train(self, x, y, budget_seconds):
        report = super().train(x, y, budget_seconds)
        self._data = (np.asarray(x, dtype=np.float32), np.asarray(y))
        return report

    def optimize(self):
        pruner = MagnitudePruner(self.model, scope="global")
        pruner.prune(self.sparsity)
        optimizer = pruner.wrap(self.build_optimizer(self.model))
        x, y = self._data
        loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, seed=self.seed)
        self.model.train()
        for _ in range(self.fine_tune_epochs):
            for xb, yb in loader:
                loss = cross_entropy(self.model(Tensor(xb)), yb)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        pruner.remove()

    def state(self):
        out = {}
        for name, layer in self.model.named_modules():
            if isinstance(layer, Linear):
                csr = CSRMatrix.from_dense(layer.weight.data)
                out[f"{name}.values"] = csr.values.astype(np.float16)
                out[f"{name}.col_indices"] = csr.col_indices
                out[f"{name}.row_ptr"] = csr.row_ptr
                out[f"{name}.shape"] = np.array(csr.shape, dtype=np.uint16)
                out[f"{name}.bias"] = layer.bias.data.astype(np.float16)
        return out

    def load_state(self, arrays):
        self.model = self.build_model()
        for name, layer in self.model.named_modules():
            if isinstance(layer, Linear):
                csr = CSRMatrix(
                    arrays[f"{name}.values"].astype(np.float32),
                    arrays[f"{name}.col_indices"],
                    arrays[f"{name}.row_ptr"],
                    tuple(int(v) for v in arrays[f"{name}.shape"]),
                )
                layer.weight.data = csr.to_dense()
                layer.bias.data = arrays[f"{name}.bias"].astype(np.float32)
