"""Nightly LoRA training: dataset from reviews, peft training, evaluation, gated promotion."""
