def test_probe(cast):
    assert cast["alice"]
def test_probe2(cast):
    assert cast["alice"]
