"""Run folders: the one contract for what a trained model leaves on disk.

``layout``       the names of a run's files, what counts as a run, the one overwrite refusal
``checkpoints``  checkpoint folders: atomic writes, checksums, no pickle; which step the
                 parameters are at (:func:`training_progress`)
``run``          :class:`Run` and :func:`load_run` / :func:`create_run`
``writer``       :class:`RunWriter`: the lock on a run folder, new runs built aside and swapped in
``outputs``      :class:`OutputWriter`: the readers' shared lock, the guard of their output
                 folders and the record of what they wrote (``outputs.json``)
``lock``         the readers-writer ``flock`` both take
"""

from ppl_vae.runs.checkpoints import TrainingProgress, training_progress
from ppl_vae.runs.layout import (
    BDMC_FILE,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    CURVES_FILE,
    DIAGNOSTICS_NETCDF,
    DIAGNOSTICS_STEM,
    DIAGNOSTICS_TABLE,
    HISTORY_FILE,
    INTERPOLATIONS_FILE,
    LATENTS_FILE,
    METRICS_FILE,
    OUTPUTS_FILE,
    PARAMS_FILE,
    RECONSTRUCTIONS_FILE,
    REPORT_STEM,
    SAMPLES_FILE,
    SPEC_FILE,
    SPLITS,
    STEP_METRIC,
    TRAVERSALS_FILE,
    VARIANCE_DIR,
    VARIANCE_RATIOS,
    VARIANCE_TABLES,
    CheckpointError,
    NotARunError,
    OutsideFolderError,
    RunError,
    RunExistsError,
    RunLockedError,
    check_replaceable,
    check_run_location,
    contained,
    is_run,
    require_run,
)
from ppl_vae.runs.outputs import OutputWriter
from ppl_vae.runs.run import (
    EvaluationData,
    Run,
    create_run,
    load_run,
    read_run,
    write_config,
)
from ppl_vae.runs.writer import RunWriter, writer_home

__all__ = ["BDMC_FILE", "CHECKPOINT_DIR", "CONFIG_FILE", "CURVES_FILE", "DIAGNOSTICS_NETCDF",
           "DIAGNOSTICS_STEM", "DIAGNOSTICS_TABLE", "HISTORY_FILE", "INTERPOLATIONS_FILE",
           "LATENTS_FILE", "METRICS_FILE", "OUTPUTS_FILE", "PARAMS_FILE", "RECONSTRUCTIONS_FILE",
           "REPORT_STEM", "SAMPLES_FILE", "SPEC_FILE", "SPLITS", "STEP_METRIC", "TRAVERSALS_FILE",
           "VARIANCE_DIR", "VARIANCE_RATIOS", "VARIANCE_TABLES", "CheckpointError",
           "EvaluationData", "NotARunError", "OutputWriter", "OutsideFolderError", "Run",
           "RunError", "RunExistsError", "RunLockedError", "RunWriter", "TrainingProgress",
           "check_replaceable", "check_run_location", "contained", "create_run", "is_run",
           "load_run", "read_run", "require_run", "training_progress", "write_config",
           "writer_home"]
