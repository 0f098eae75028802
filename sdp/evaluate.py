"""`python -m sdp.evaluate --config C --model M`: the evaluate stage as a command (it lives in `sdp.stages.evaluate`)."""

from sdp.stages.evaluate import main

if __name__ == "__main__":
    main()
