"""Training: the loop, its settings, distillation, and the experiments that made the shipped models.

    config         TrainConfig: every setting of a run, with its option help and accepted values
    train          the loop: resumable, one lock per run folder, checkpoints never lost
    distill        learning from a full-precision teacher: its output or its block outputs
    distributed    the process group under torchrun
    experiment     grids of runs, seeds and the shipped models (`binsr experiment`)
    report         the results tables written from an experiment
    train_bench    training speed and distillation's overhead

Imports: every library layer below (`binsr.base`, `binsr.nn`, `binsr.data`, `binsr.engine`,
`binsr.evaluation`); never `binsr.viz` or `binsr.cli`.
"""
