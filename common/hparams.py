"""The book's hyperparameters for AlexNet on Fashion-MNIST, in one place."""

from dataclasses import asdict, dataclass

NUM_CLASSES = 10  # Fashion-MNIST has ten classes
IN_CHANNELS = 1  # grey-scale images
IMAGE_SIDE = 28  # Fashion-MNIST's native side, upsampled to `resize`
DROPOUT = 0.5  # after each hidden dense layer


@dataclass(frozen=True)
class HParams:
    """What a training run depends on: changing any of these changes the result."""

    lr: float = 0.01  # minibatch SGD, no momentum, no weight decay
    batch_size: int = 128
    num_epochs: int = 10
    resize: int = 224  # 28x28 upsampled (bilinear) to resize x resize
    seed: int = 0
    train_limit: int | None = None  # None: all 60,000 training images
    test_limit: int | None = None  # None: all 10,000 test images
    fast: bool = False  # opt-in fast path (--fast): bf16 and compiled steps, not the book's float32 math

    def to_dict(self) -> dict:
        """The hyperparameters as a JSON-ready dict."""
        return asdict(self)


BOOK = HParams()
