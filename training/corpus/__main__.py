"""`python -m training.corpus prose|reviews`: build (or find cached) a corpus; see `training.corpus.build.main`."""

from training.corpus.build import main

main()
