"""MLflow: the register stage, tracking runs, registered versions and aliases, lineage."""
