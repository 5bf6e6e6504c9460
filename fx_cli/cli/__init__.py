"""The click shell: parse, validate, call one core function, print its result."""
