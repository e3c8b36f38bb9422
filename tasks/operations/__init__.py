"""Operations jobs: recovery of runs whose worker is gone (the ledger says running, nobody holds the job)."""
