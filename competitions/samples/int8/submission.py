"""Size: the baseline MLP quantized to int8 with module 17 (tinytorch.quantization).

After training, `optimize()` runs post-training static quantization: observers on every
Linear (per-channel symmetric weights, per-tensor affine inputs), a calibration pass over
training images, then conversion to QuantizedLinear layers. The stored state is the int8
weight codes plus float32 scales and biases, about a quarter of the float32 bytes.
"""

import numpy as np

from tinytorch.competition import CompetitionSubmission
from tinytorch.core.data import DataLoader, TensorDataset
from tinytorch.core.nn import ReLU, Sequential
from tinytorch.quantization import (
    QConfig,
    QParams,
    QuantizedLinear,
    calibrate,
    convert,
    prepare,
)


class Int8(CompetitionSubmission):
    team = "int8"
    category = "size"
    tags = ("quantization", "int8", "per-channel", "ptq")
    description = (
        "Baseline MLP, post-training static int8 quantization (per-channel weights, calibrated "
        "activations) with tinytorch.quantization."
    )
    stop_accuracy = None  # 20 full epochs, like the baseline
    max_epochs = 20
    calibration_images = 512

    def train(self, x, y, budget_seconds):
        report = super().train(x, y, budget_seconds)
        self._calibration = np.asarray(x[: self.calibration_images], dtype=np.float32)
        return report

    def optimize(self):
        prepared = prepare(self.model)
        calibrate(prepared, DataLoader(TensorDataset(self._calibration), batch_size=128))
        self.model = convert(prepared)

    def load_state(self, arrays):
        layers = []
        for i in (0, 2):  # the two Linear layers of Sequential(Linear, ReLU, Linear)
            input_qparams = QParams(arrays[f"{i}.input_scale"], arrays[f"{i}.input_zero_point"])
            layers.append(
                QuantizedLinear(
                    arrays[f"{i}.weight"], arrays[f"{i}.weight_scale"], arrays[f"{i}.bias"],
                    input_qparams,
                    weight_bits=QConfig().weight_bits,  # what convert() used: the default
                )
            )
        self.model = Sequential(layers[0], ReLU(), layers[1])
