"""A trained segmentor written out for a fixed vocabulary, to run without splitmatch (ONNX).

:func:`splitmatch.export.onnx_file.export_onnx` writes the graph of
:class:`splitmatch.export.fixed_vocabulary.FixedVocabularySegmentation`: what
:class:`splitmatch.predict.Predictor` computes for one window, with the class names' text
embeddings folded in as constants. :mod:`splitmatch.export.metadata` names what the file
records about itself. Exporting needs the ``onnx`` extra (``pip install -e '.[onnx]'``).
"""

from splitmatch.errors import SplitmatchError


class ExportError(SplitmatchError, ValueError):
    """An export cannot be made as asked: a missing extra, a size the model cannot read, an opset
    the exporter cannot write, or a file that is not a splitmatch export."""
