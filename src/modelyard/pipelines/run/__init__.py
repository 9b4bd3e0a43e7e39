"""Moving events through a pipeline: running a batch of one stage (``runner``), settling what it made
(``settle``, ``store``), reading upstream outputs (``upstream``), and the control, archival and removal of
events and their outputs."""
