"""fedar_jax: federated learning on class-imbalanced data with FedAR, in JAX."""
