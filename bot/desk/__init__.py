"""The DSL's desk: a signed-in web page where DSLs receive, read and work each disclosure (issue #16).

``accounts`` (who may sign in, both factors, sessions), ``casework`` (the queue, a case, the actions on it),
``models`` (their tables, created by migration 0002), ``cli`` (``schoolguide desk ...``) and ``web`` (the
pages, served by ``schoolguide desk serve``).
"""
