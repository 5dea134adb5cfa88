"""Coverage-guided fuzzing of the parsers of untrusted input (atheris, libFuzzer)."""
