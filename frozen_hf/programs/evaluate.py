"""frozen-eval: the few-shot evaluation program (placeholder: moves here from frozen_hf.eval.run)."""

from frozen_hf.eval.run import main

if __name__ == "__main__":
    raise SystemExit(main())
