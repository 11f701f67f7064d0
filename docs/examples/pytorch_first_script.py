"""A PyTorch user's first script, run with tinytorch.

Everything below is PyTorch (and, for generate(), Hugging Face) code; only the import lines
name tinytorch (with PyTorch:
`import torch`, `import torch.nn as nn`, ...), and one line, marked, converts weights that
were exported from PyTorch (PyTorch's Linear weight is (out, in), ours (in, out), and
tinytorch makes that conversion explicit). `tests/test_pytorch_idioms.py` runs `main()`.

    python docs/examples/pytorch_first_script.py [pytorch_weights.npz]
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

import tinytorch as torch  # with PyTorch: import torch
import tinytorch.nn as nn  # import torch.nn as nn
import tinytorch.nn.functional as F  # import torch.nn.functional as F
from tinytorch.utils.data import DataLoader, TensorDataset  # from torch.utils.data import ...


class Net(nn.Module):
    def __init__(self, hidden: int = 32):
        super().__init__()
        self.fc1 = nn.Linear(2, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.bn(self.fc1(x))))


def make_data(n_per_class: int = 100):
    rng = np.random.default_rng(0)
    centers = np.array([[3.0, 0.0], [0.0, 3.0], [-3.0, -3.0]], dtype=np.float32)
    X = rng.standard_normal((3 * n_per_class, 2)).astype(np.float32)
    X += np.repeat(centers, n_per_class, axis=0)
    y = np.repeat(np.arange(3), n_per_class)
    return torch.tensor(X), torch.tensor(y)


def main(pytorch_weights: str | None = None, epochs: int = 5) -> dict:
    torch.manual_seed(0)
    X, y = make_data()
    loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True)

    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch}: loss {loss:.4f} (float: {float(loss):.4f})")

    # one hand-written SGD step, the way the PyTorch tutorials show it
    loss = F.cross_entropy(model(X), y)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 1e-3 * p.grad
    model.zero_grad()

    model.eval()
    with torch.no_grad():
        logits = model(X)
        pred = logits.argmax(dim=1)
        _, pred_max = logits.max(1)
        probs = F.softmax(logits, dim=-1)
        acc = (pred == y).float().mean()
    assert (pred_max == pred).all()
    assert probs.sum(dim=1, keepdim=True).size() == (X.size(0), 1)
    print(f"accuracy {acc:.3f}")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "net.pt")
        torch.save(model.state_dict(), path)
        restored = Net()
        restored.load_state_dict(torch.load(path))
        restored.eval()
        with torch.no_grad():
            same = bool((restored(X) == logits).all())
    print(f"save/load round trip identical: {same}")

    # text generation with Hugging Face's generate() options (with HF: AutoModelForCausalLM)
    from tinytorch.core.transformer import GPTConfig, TinyGPT

    gpt = TinyGPT(GPTConfig(vocab_size=16, block_size=16, n_layer=1, n_head=2, d_model=16), seed=0)
    input_ids = torch.tensor([[1, 2, 3]])
    greedy_ids = gpt.generate(input_ids, max_new_tokens=20)  # greedy, HF's default
    cached_ids = gpt.generate(input_ids, max_new_tokens=20, use_cache=True)  # past block_size
    sampled = gpt.generate(
        input_ids, max_new_tokens=20, do_sample=True, temperature=0.8, top_k=0, top_p=0.9
    )
    assert (greedy_ids == cached_ids).all() and sampled.shape == (1, 23)
    print("generated:", greedy_ids[0].tolist(), "sampled:", sampled[0].tolist())

    out = {"accuracy": float(acc), "loss": float(loss), "roundtrip": same,
           "generated": greedy_ids[0].tolist()}
    if pytorch_weights:
        # weights exported from PyTorch: np.savez(p, **{k: v.numpy() for k, v in sd.items()})
        sd = dict(np.load(pytorch_weights))
        student = Net()
        student.load_state_dict(torch.utils.from_pytorch_state_dict(sd, student))  # tinytorch
        student.eval()
        with torch.no_grad():
            out["pytorch_logits"] = student(X[:4]).numpy().copy()
        print("loaded the PyTorch state dict; logits of 4 points:", out["pytorch_logits"][0])
    return out


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
