"""`python -m sdp.verify FILE [-o OUT]`: the verify stage as a command (it lives in `sdp.stages.verify`)."""

from sdp.stages.verify import main

if __name__ == "__main__":
    raise SystemExit(main())
