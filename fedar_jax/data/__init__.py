"""Data sources, partitioners and padded federated arrays."""
