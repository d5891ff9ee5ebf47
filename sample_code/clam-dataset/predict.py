"""The CLaM sample's model as the model store serves it: the network, the preprocessing training
uses, and the predict contract (class Model with load and predict).

main.py imports small_cnn and to_tensor from here, so training and prediction cannot drift apart,
and copies this file into /mnt/export/model/ beside the weights and the model card. Needs torch
and numpy only: the platform decodes the PNG or NPY files before predict sees them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

VIEWS = ("LCC", "LMLO", "RCC", "RMLO")
HEIGHT, WIDTH = 256, 208  # what every image is resized to, in training and here
WEIGHTS = "model.pt"


def small_cnn() -> nn.Module:
    def block(channels_in: int, channels_out: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(channels_out),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )

    return nn.Sequential(
        block(1, 16),
        block(16, 32),
        block(32, 64),
        block(64, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(64, 1),
    )


def to_tensor(pixels: np.ndarray, view: str) -> torch.Tensor:
    """One view as the network's input: 1×HEIGHT×WIDTH in [0, 1], right breasts mirrored.

    `pixels` is a 2-D array: 8-bit (a PNG) or 12-bit in uint16 (CLaM's NPY files)."""
    if pixels.ndim == 3:  # an RGB(A) PNG: the mean of its colour channels
        pixels = pixels[..., :3].mean(axis=2)
    if pixels.ndim != 2:
        raise ValueError(f"{view}: expected a 2-D image, got an array of shape {pixels.shape}")
    scale = 4095.0 if pixels.dtype == np.uint16 or pixels.max(initial=0) > 255 else 255.0
    image = torch.from_numpy(np.clip(pixels.astype(np.float32) / scale, 0.0, 1.0))
    if view.startswith("R"):
        # Right breasts are mirrored to face like left ones: one orientation to learn, not two.
        image = torch.flip(image, dims=[1])
    if tuple(image.shape) != (HEIGHT, WIDTH):
        image = nn.functional.interpolate(
            image[None, None], size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False
        )[0, 0]
    return image.unsqueeze(0)


class Model:
    """The predict contract: load once per worker, then predict one case (four views) per call."""

    def load(self, model_dir: str, device: str) -> None:
        self.device = torch.device(device)
        self.network = small_cnn()
        state = torch.load(Path(model_dir) / WEIGHTS, map_location="cpu", weights_only=True)
        self.network.load_state_dict(state)
        self.network.to(self.device).eval()

    @torch.no_grad()
    def predict(self, inputs: dict, parameters: dict) -> dict:
        missing = [view for view in VIEWS if view not in inputs]
        if missing:
            raise ValueError(f"missing view(s): {', '.join(missing)}; a case needs all of {', '.join(VIEWS)}")
        batch = torch.stack([to_tensor(np.asarray(inputs[view]), view) for view in VIEWS]).to(self.device)
        per_view = torch.sigmoid(self.network(batch).squeeze(1)).cpu().tolist()
        # The network was trained per image with its case's label: the case is as suspicious as its
        # most suspicious view.
        threshold = float(parameters.get("threshold", 0.5))
        probability = max(per_view)
        return {
            "malignancy_probability": probability,
            "view_probabilities": per_view,  # in the order of VIEWS
            "label": "malignant" if probability >= threshold else "benign",
        }
