"""The process fastcap computes in: environment variables, names, CPU, backends, precision,
threads, memory and safe file writes. The lowest floor: it imports nothing else of fastcap
but the kernel table."""
