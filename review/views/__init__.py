"""Pages of the review app, one module per page: :mod:`.drafts` (the draft page and its actions),
:mod:`.queue`, :mod:`.archive`, :mod:`.policy` and :mod:`.project` (a project's home);
:mod:`.common` holds what they share. ``review.urls`` names each view by its module.
"""
