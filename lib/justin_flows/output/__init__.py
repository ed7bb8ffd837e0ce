"""The wrapper job's output phase (upstream agents/justin-wrapper-job after the jobscript,
jobutils/justin-job-datasets and commands/justin-rucio-upload; reference §5.2-§5.9).

Steps, each a plain function taking its adapters and returning a ``StepReport``:
``job.load_output_job`` (allocation and outputs, no side effect), ``results.record_results``,
``logs.build_logs_tgz`` / ``logs.upload_logs``, ``datasets.ensure_output_datasets``,
``files.store_output_files``, ``files.catalogue_output_files``, ``results.confirm_results``,
``files.confirm_output_files``. The flow ``flows/wrapper_output/output.py`` chains them;
``cli`` is the command a wrapper job runs.
"""
