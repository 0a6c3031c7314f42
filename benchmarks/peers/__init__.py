"""The peers fastcap's benchmarks measure it against: name -> label in the report."""
PEERS = {"cs231n": "CS231n-style NumPy", "torch": "PyTorch"}
