import pytest
import torch
from torch import nn

from usecases.core.inference import fold_batchnorm, optimize_for_cpu
from usecases.core.registry import create_model, list_models


@pytest.mark.parametrize("name", list_models(usecase="crop_disease"))
def test_optimized_model_matches_eager(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, image_size=64)
    model.train()
    for _ in range(2):  # non-trivial running statistics
        model(torch.randn(4, 3, 64, 64))
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    fast = optimize_for_cpu(model, x[:1])
    assert fast is not model
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert torch.allclose(fast(x), model(x), atol=1e-4)


def test_bn_applied_before_conv_is_not_folded_silently():
    class PreNorm(nn.Module):  # registers conv then bn, but applies bn first
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x):
            return self.conv(self.bn(x))

    torch.manual_seed(0)
    m = PreNorm()
    m.bn.running_mean.fill_(0.5)
    m.bn.running_var.fill_(2.0)
    m.eval()
    assert optimize_for_cpu(m, torch.randn(1, 3, 8, 8)) is m  # verification catches it
    assert fold_batchnorm(PreNorm()) == 1  # the raw fold does not know better
