"""Evaluation of calibration and hallucination: grading, metrics, intervals, the evaluate stage.

Import the pieces from their modules (`nextlab.evaluate.grading`, `.metrics`, `.bootstrap`,
`.summary`, `.run`, `.figures`); this package stays import-light.
"""
