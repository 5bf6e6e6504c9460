"""Task runners: the framework-specific side of a collaborator.

Framework runners live in their own modules and import their framework only
inside functions, so plans can be validated without TensorFlow.
"""
