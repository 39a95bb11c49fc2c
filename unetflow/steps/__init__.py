"""One function per workflow step, grouped by stage: the glue between the config's sections and the modules
that do the work. The Snakemake scripts and the `unetflow` CLI both call these, so a step behaves the same
inside and outside the workflow. Each takes typed config sections (unetflow.config.model), guards its
inputs (`atomic.protect_inputs`) and writes its outputs atomically.

torch and the modules that use it are imported inside the steps that need them: the data steps (download,
synthesize, import, weights, evaluate) then start in a fraction of a second, which matters on a login node
and for Snakemake jobs that each start a fresh interpreter.
"""
