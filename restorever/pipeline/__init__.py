"""The evaluation pipeline: stages, the content-addressed cache and the runner."""
