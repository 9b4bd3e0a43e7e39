"""Sample input: ``modelyard sync DIR --pipeline P`` moves the files a scanner writes into a folder to the
artifact store and submits each as an event of a pipeline.

- ``folder`` — scanning the folder, and ``Settler``: a file is taken only once its size and mtime have
  stopped changing for the settle period (a scanner may still be writing it).
- ``state`` — the local state file (``.modelyard-sync.json`` in the folder): what was stored and submitted,
  and the upload id of a file part-way up, so a re-run skips what is there and resumes what is not.
- ``upload`` — one file up through the resumable parts API (``artifacts.parts``): each part with its
  Content-MD5, the parts already on the server skipped.
- ``run`` — one pass over the folder (``sync_once``) and the watching loop (``watch``).
"""
