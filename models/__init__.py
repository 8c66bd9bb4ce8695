"""PyTorch models and the ViTCoD / ReViT algorithms. Needs torch; runs on the PC, not on the board."""
