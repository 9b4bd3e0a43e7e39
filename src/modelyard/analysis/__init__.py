"""Tissue-imaging analysis: multichannel images in, cells and their statistics out.

- ``images`` — reading multichannel TIFF / OME-TIFF, PNG and NumPy images by windows (channel names from
  OME metadata), and the tile grid every tiled pass walks.
- ``preprocess`` — per-channel normalisation and background subtraction, tile by tile, written tiled.
- ``segment`` — nuclei (threshold + watershed, or a registered ONNX model's probability map), stitched
  across tiles, a label mask and a per-cell table.
- ``quality`` — per-sample quality checks and the thresholds a spec can fail an event on.
- ``render`` — heatmap PNGs and label-mask overlays on a channel composite.
- ``stages_images`` — the ``tissue_*`` image stage kinds of pipeline specs.
"""
