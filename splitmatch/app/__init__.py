"""``splitmatch app``: a local web page to try a model on your own images and class names.

The work of one request is :class:`splitmatch.app.segment.Segmenter` (plain Python, no web);
:mod:`splitmatch.app.page` lays it out with Gradio, an optional extra (``pip install -e
'.[app]'`` in the splitmatch folder) that nothing else in the package imports.
"""
