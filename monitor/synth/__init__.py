"""Generated stand-ins for a served NLP model and its traffic, for the demo, the benches and the tests.

Nothing here downloads anything: the corpus, the WordPiece tokenizer and the ONNX classifier are all built
from a seed (``monitor.synth.model``).
"""

__all__ = ["model"]
