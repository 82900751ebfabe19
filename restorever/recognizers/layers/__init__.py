"""Network blocks shared by recognizer backends (torch only; imported lazily by the backends)."""
from .iresnet import IRESNET_LAYERS, IBasicBlock, IResNet, iresnet

__all__ = ["IBasicBlock", "IResNet", "IRESNET_LAYERS", "iresnet"]
