"""The reporting stage: rules ``figures`` and ``summarize``.

- :mod:`~memlab.reporting.tables`: the study's tables read once, as the figures need them;
- :mod:`~memlab.reporting.figures`: one drawing function per figure;
- :mod:`~memlab.reporting.findings`: the answers, with intervals and the power behind them;
- :mod:`~memlab.reporting.report`: the findings page and the report's front page.

The top floor: may import every stage below it; nothing in the library imports it.
"""
