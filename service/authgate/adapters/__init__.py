"""Translation between proxy dialects and the core: CheckRequest in, Decision out."""
