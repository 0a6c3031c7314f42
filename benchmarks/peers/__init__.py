"""The peers fastcap's benchmarks measure it against: name -> label in the report."""
PEERS = {"cs231n": "CS231n-style NumPy", "torch": "PyTorch",
         # PyTorch's fastest CPU mode on CPUs with bf16 units: torch.autocast("cpu", bfloat16)
         "torch-bf16": "PyTorch autocast bf16"}
# The peers that run PyTorch (their threads are matched to fastcap's).
TORCH_PEERS = ("torch", "torch-bf16")
