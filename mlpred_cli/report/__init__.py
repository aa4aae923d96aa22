"""The periodic HTML report (``mlpred report``; optional extra ``mlpred[report]``):
``content.report_content`` gathers the figures, ``html.render_html`` draws them,
``files.write_report`` writes the file(s)."""
