"""Using a model: sampling and beams (sample.py), scoring (score.py), n-best rescoring
(rescore.py), the task models' predictions (predict.py), the explain page's numbers and page
(explain.py, explain_page.py)."""
