"""The job factory (upstream ``agents/justin-job-factory``, reference §4): plain functions.

``workflow_jobs`` (workflowJobs), ``awt_jobs_to_sites`` (awtJobsToSites) and the shared
``submit_cluster`` (submitJobs). The Prefect flows call these; no Prefect import here.
"""
