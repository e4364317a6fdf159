"""parallelix-node: the operator-side daemon and CLI of a ParalleliX inference node."""
