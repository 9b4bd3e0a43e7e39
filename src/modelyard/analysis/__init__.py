"""Tissue-imaging analysis: multichannel images in, cells and their statistics out.

Each step is a Python function first and a pipeline stage kind second (the ``stages_*`` modules register
the ``tissue_*`` kinds). Bad cell data raises ``errors.InvalidCells`` (422), which a stage turns into a
failed stage run with that reason and an API into problem+json; nothing comes back as NaN silently.

Most of it needs the ``analysis`` extra (the root ``extras`` module: scipy, scikit-image, scikit-learn,
dask.distributed, tifffile, zarr); without it, importing such a module raises ``ExtraMissing``, naming the
install command. ``errors``, ``params``, ``render``, the ``stages_*`` modules (a server imports them to know
the stage kinds) and ``images`` (PNG and NumPy; TIFF needs the extra) need only numpy and Pillow.

- ``images`` — reading multichannel TIFF / OME-TIFF, PNG and NumPy images by windows (channel names from
  OME metadata), and the tile grid every tiled pass walks.
- ``preprocess`` — per-channel normalisation and background subtraction, tile by tile, written tiled.
- ``segment`` — nuclei (threshold + watershed, or a registered ONNX model's probability map), stitched
  across tiles, a label mask and a per-cell table.
- ``measure`` — the per-cell table of a label mask measured by tiles (images too large to read whole).
- ``quality`` — per-sample quality checks and the thresholds a spec can fail an event on.
- ``render`` — heatmap PNGs and label-mask overlays on a channel composite.
- ``stages_images`` — the ``tissue_preprocess``, ``tissue_segment``, ``tissue_cells``, ``tissue_quality``,
  ``tissue_overlay`` and ``tissue_heatmap`` stage kinds.
- ``errors`` — ``InvalidCells`` and ``ZeroFrequency``: the strict-validation errors.
- ``params`` — what the stage kinds check in a spec: parameter problems, QC threshold names, limits.
- ``typing`` — cell types from marker intensities (k-means or a Gaussian mixture, seeded) or supplied.
- ``neighbours`` — the k nearest cells or those within a radius (KD-tree), as a sparse CSR graph.
- ``stats`` — type frequencies, the symmetric interaction count matrix, the log-odds ratio (and its named
  ``upper_triangle`` variant) and the seeded permutation test of both.
- ``stages_stats`` — the ``tissue_type`` and ``tissue_stats`` stage kinds.
"""
