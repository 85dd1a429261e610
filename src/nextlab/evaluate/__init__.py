"""Evaluation of calibration and hallucination: intervals, summaries, the evaluate stage.

Import the pieces from their modules (`nextlab.evaluate.bootstrap`, `.summary`, `.tables`,
`.run`, `.figures`); grading, answers and the metrics themselves live in `nextlab.qa`. This
package stays import-light.
"""
