"""Training recipes, one module per model family; each registers with ``vla_course.train.recipe``."""
