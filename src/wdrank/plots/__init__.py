"""Figures of the paper, one module per experiment; `style` holds what they share."""
