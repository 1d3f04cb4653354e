"""Local doubles of HelseID and Norsk helsenett's Meldingstjener, for the tests and `make run`.

Part of the source tree only: neither the wheel nor the image ships them (production knows the
national services by their base URLs).
"""
