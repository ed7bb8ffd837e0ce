"""Info Collector functions (upstream agents/justin-info-collector), one module per job."""
