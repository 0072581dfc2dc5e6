"""babyllama: train your own baby Llama 2 end to end, and keep an honest record of every run."""

__version__ = "0.1.0"
