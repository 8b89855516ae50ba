"""The book's AlexNet in PyTorch.

Its files, read in this order (each imports only those before it): model.py, data.py, step.py,
parallel.py, train.py, predict.py, bench.py. PyTorch's alone:
bench_book.py (the book's own data path) and export.py (ONNX).
"""

from common.allocator import keep_freed_memory
from common.backends import require

require("torch")  # one clear line, not a traceback, where the framework is missing or too old

# PyTorch's CPU tensors come from malloc, which unmaps each large one when it is freed: the next step faults
# its pages in again. Kept instead: 1.27x training in bf16 and 1.09x in float32 on a 2-core CPU; the other
# frameworks gained too little for the memory it costs them (docs/results.md).
keep_freed_memory()
