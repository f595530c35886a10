"""Generated stand-ins for a served NLP model and its traffic, for the demo, the benches and the tests.

Nothing here downloads anything: the corpus, the WordPiece tokenizer and the ONNX classifier
(``monitor.devkit.synth.model``) and the prediction logs (``monitor.devkit.synth.traffic``) are all built from a seed.
"""

__all__ = ["model", "traffic"]
