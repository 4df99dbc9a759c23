"""The automated checks, as pure functions: toxicity, ethics rules, plagiarism (lexical and
semantic), each declaring the languages it can read.

Nothing here imports Django (the ORM, settings), the policy or any other part of the studio,
and nothing reads the environment: the services layer (``review.services``) passes each check
its configuration and stores what it returns (tests/test_review_structure.py holds the rule).
"""
