"""Networks and losses for Im2Flow (U-Net generator, motion-content ResNet-18)."""
