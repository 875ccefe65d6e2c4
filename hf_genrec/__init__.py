"""hf_genrec: generative recommendation with semantic IDs on Hugging Face Transformers."""

__version__ = "0.1.0"
