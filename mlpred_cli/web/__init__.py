"""The live dashboard, ``mlpred serve`` (optional extra ``mlpred[web]``): a Starlette app over
a read-only engine, one poller, server-sent events and vendored uPlot charts."""
