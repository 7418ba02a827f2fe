"""Test-only ComfyUI nodes: inputs no model-free built-in node makes (an empty batch, a
5-channel tensor, NaN values), to check that our node refuses them with an execution error."""

import torch


class PngcastTestTensor:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"kind": (["empty", "five_channels", "nan", "gradient"],),
                             "batch": ("INT", {"default": 1, "min": 0, "max": 64}),
                             "size": ("INT", {"default": 64, "min": 1, "max": 4096})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "make"
    CATEGORY = "testing"

    def make(self, kind, batch, size):
        if kind == "empty":
            return (torch.zeros(0, size, size, 3),)
        if kind == "five_channels":
            return (torch.rand(batch, size, size, 5),)
        x = torch.linspace(0, 1, size * size * 3).reshape(1, size, size, 3).repeat(batch, 1, 1, 1)
        if kind == "nan":
            x[batch - 1, 1, 2, 0] = float("nan")
        return (x.contiguous(),)


NODE_CLASS_MAPPINGS = {"PngcastTestTensor": PngcastTestTensor}
