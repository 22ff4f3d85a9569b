"""Reading finished runs: inference with a saved model, reports, significance tests and the
results book (collect / render).
"""
