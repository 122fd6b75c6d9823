"""What a run tells people: the pipeline report, noise bounds on differences, model cards, data provenance."""
