"""Other people's programs, copied here so that cgrad can run them unchanged: the tests
check that they give the same numbers on cgrad's Value as on their own, and the
benchmarks time them both ways.  Nothing in the library imports from here."""
