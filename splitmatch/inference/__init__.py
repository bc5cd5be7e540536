"""Inference: from a segmentor's query outputs to class scores and label maps, for any vocabulary.

* :mod:`~splitmatch.inference.segmentation`: query scores -> semantic scores, whole image or
  sliding windows, seen-class calibration, candidate scoring;
* :mod:`~splitmatch.inference.images`: one image resized to the protocol, scored, labelled at
  its own size (what evaluation and prediction share);
* :mod:`~splitmatch.inference.batched`: many images, their crops batched, each image's own labels;
* :mod:`~splitmatch.inference.features`: the tensors a semantic map is made from, for building on a model;
* :mod:`~splitmatch.inference.label_upsampling`: argmax of bilinearly upsampled scores in
  bounded memory.
"""
