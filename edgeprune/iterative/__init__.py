"""Iterative sensitivity pruning (the paper loop), resumable."""
