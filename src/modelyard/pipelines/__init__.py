"""Pipelines: named, versioned DAGs of stages that events (one raw data location each) flow through.

Three sub-packages show the structure:

- ``spec`` — what a pipeline is, validated and pure: the spec types, ``parse`` (every problem at once),
  the common fields (``fields``), and ``kinds``, the registry of stage kinds.
- ``stages`` — what a stage is given and gives back (``Item``, ``Outcome``, ``StageCall``), the built-in
  kinds (``inferrer``, ``model``, ``python``, ``command``), the raw data fetched once per event (``raw``,
  ``sources``), stored outputs (``outputs``) and the batch a worker runs (``batch``).
- ``run`` — moving events through: running a batch (``runner``), settling it (``settle``, ``store``),
  reading upstream outputs (``upstream``), control, archival and removal.

Beside them: ``models``, ``schemas``, ``service`` (apply specs), ``submission`` and ``events`` (submit and
read events), ``watch`` (the watchers), ``dispatch`` (the claimed queue of stage runs), ``workflows`` (the
durable batch workflow), ``api``.

A new stage kind is one ``StageKind`` object registered with ``spec.kinds.register_stage_kind`` in a
module of the part that owns it (as ``analysis.stages_images`` does); that module is named once, in
``spec.kinds.KIND_MODULES`` (a modelyard part) or a package's ``modelyard.stage_kinds`` entry point (a
plug-in), and nothing else here changes. A stage's end and an event's end
are on the durable event log (``pipelines.stage.done``, ``pipelines.event.done``) for any consumer.
"""
