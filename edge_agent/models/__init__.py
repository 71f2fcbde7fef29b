"""Model versions on the box: deploy, validate, swap between frames, probation, rollback
(docs/models.md)."""
