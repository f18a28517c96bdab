"""vla-course: Vision-Language-Action models in miniature (pi0, FAST, KI, pi0.5, RECAP)."""

__version__ = "0.1.0"
