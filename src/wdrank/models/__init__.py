"""Model builders: language models (`lm`, transformers), Vision Transformers (`vit`, timm), the toy Transformer of
Fig. 2 (`toy`)."""
