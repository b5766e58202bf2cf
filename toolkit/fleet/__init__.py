"""Deploying to TF Serving fleets: the plan (models.config), manifests, label promotion."""
